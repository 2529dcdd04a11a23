//! Trino types and their Arrow counterparts, and decoding of the JSON values the REST protocol
//! sends (`data` rows) into Arrow arrays, one column at a time.
//!
//! | Trino | Arrow | wire form |
//! |---|---|---|
//! | boolean | Boolean | `true` |
//! | tinyint, smallint, integer, bigint | Int8 … Int64 | number |
//! | real, double | Float32, Float64 | number, or `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | decimal(p,s) | Decimal128(p,s) | `"123.45"` |
//! | varchar, char, json, uuid, ipaddress, time with time zone, interval… | Utf8 | string |
//! | date | Date32 | `"2025-01-31"` |
//! | time(p) | Time64 (µs for p ≤ 6, else ns) | `"12:34:56.789"` |
//! | timestamp(p) | Timestamp (ms/µs/ns by p), no zone | `"2025-01-31 12:34:56.789"` |
//! | timestamp(p) with time zone | Timestamp (ms/µs/ns by p), `UTC` | `"… 12:34:56.789 Asia/Seoul"` |
//! | varbinary | Binary | base64 |
//! | array(T), map(K,V), row(a T, …) | List, Map, Struct | JSON array, object, positional array |
//!
//! Precision beyond nanoseconds (Trino goes to picoseconds) is truncated.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, MapArray,
    NullArray, StringBuilder, StructArray, Time64MicrosecondBuilder, Time64NanosecondBuilder,
    TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use serde_json::Value;

use super::error::TypeError;

/// A Trino type, parsed from the `type` string of a result column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrinoType {
    Boolean,
    TinyInt,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Varchar,
    Char,
    Varbinary,
    Json,
    Date,
    Time {
        precision: u8,
    },
    Timestamp {
        precision: u8,
    },
    TimestampTz {
        precision: u8,
    },
    Array(Box<TrinoType>),
    Map(Box<TrinoType>, Box<TrinoType>),
    Row(Vec<(String, TrinoType)>),
    /// The type of a bare `NULL`.
    Unknown,
    /// Anything else (uuid, ipaddress, time with time zone, intervals…): kept as its text.
    Other(String),
}

impl TrinoType {
    /// Parses a type as Trino prints it: `decimal(12,2)`, `timestamp(6) with time zone`,
    /// `map(varchar, array(integer))`, `row("a" bigint, b varchar)`.
    pub fn parse(text: &str) -> Result<TrinoType, TypeError> {
        let mut parser = TypeParser { s: text, pos: 0 };
        let t = parser.ty()?;
        parser.ws();
        if parser.pos != text.len() {
            return Err(parser.syntax(parser.pos, "the end of the type"));
        }
        Ok(t)
    }

    /// The Arrow type values of this type decode into.
    pub fn arrow_type(&self) -> DataType {
        match self {
            TrinoType::Boolean => DataType::Boolean,
            TrinoType::TinyInt => DataType::Int8,
            TrinoType::SmallInt => DataType::Int16,
            TrinoType::Integer => DataType::Int32,
            TrinoType::BigInt => DataType::Int64,
            TrinoType::Real => DataType::Float32,
            TrinoType::Double => DataType::Float64,
            TrinoType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            TrinoType::Varchar | TrinoType::Char | TrinoType::Json | TrinoType::Other(_) => {
                DataType::Utf8
            }
            TrinoType::Varbinary => DataType::Binary,
            TrinoType::Date => DataType::Date32,
            TrinoType::Time { precision } => DataType::Time64(if *precision <= 6 {
                TimeUnit::Microsecond
            } else {
                TimeUnit::Nanosecond
            }),
            TrinoType::Timestamp { precision } => DataType::Timestamp(time_unit(*precision), None),
            TrinoType::TimestampTz { precision } => {
                DataType::Timestamp(time_unit(*precision), Some("UTC".into()))
            }
            TrinoType::Array(item) => {
                DataType::List(Arc::new(Field::new("item", item.arrow_type(), true)))
            }
            TrinoType::Map(key, value) => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(map_fields(key, value)),
                    false,
                )),
                false,
            ),
            TrinoType::Row(fields) => DataType::Struct(row_fields(fields)),
            TrinoType::Unknown => DataType::Null,
        }
    }
}

fn time_unit(precision: u8) -> TimeUnit {
    match precision {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

fn map_fields(key: &TrinoType, value: &TrinoType) -> Fields {
    Fields::from(vec![
        Field::new("key", key.arrow_type(), false),
        Field::new("value", value.arrow_type(), true),
    ])
}

fn row_fields(fields: &[(String, TrinoType)]) -> Fields {
    fields
        .iter()
        .map(|(name, t)| Field::new(name, t.arrow_type(), true))
        .collect()
}

struct TypeParser<'a> {
    s: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    /// The signature does not go on with `expected` at `offset`.
    fn syntax(&self, offset: usize, expected: impl Into<String>) -> TypeError {
        TypeError::Syntax {
            signature: self.s.to_string(),
            offset,
            expected: expected.into(),
        }
    }

    /// `what`, which starts at `offset`, is outside what its type allows.
    fn out_of_range(&self, offset: usize, what: String) -> TypeError {
        TypeError::OutOfRange {
            signature: self.s.to_string(),
            offset,
            what,
        }
    }

    fn ws(&mut self) {
        while self.s[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), TypeError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.syntax(self.pos, format!("{token:?}")))
        }
    }

    /// A word: letters, digits and underscores, or a double-quoted name.
    fn word(&mut self) -> Result<String, TypeError> {
        self.ws();
        let rest = &self.s[self.pos..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        out.push('"');
                        chars.next();
                    } else {
                        self.pos += i + 2;
                        return Ok(out);
                    }
                } else {
                    out.push(c);
                }
            }
            return Err(self.syntax(self.s.len(), "the closing quote of a quoted name"));
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.syntax(self.pos, "a name"));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    fn number(&mut self) -> Result<u32, TypeError> {
        self.ws();
        let at = self.pos;
        let w = self.word()?;
        w.parse().map_err(|_| self.syntax(at, "a number"))
    }

    fn optional_precision(&mut self, default: u8) -> Result<u8, TypeError> {
        if self.eat("(") {
            self.ws();
            let at = self.pos;
            let p = self.number()?;
            self.expect(")")?;
            u8::try_from(p).map_err(|_| self.out_of_range(at, format!("precision {p}")))
        } else {
            Ok(default)
        }
    }

    fn with_time_zone(&mut self) -> bool {
        let save = self.pos;
        if self.eat("with") && self.eat("time") && self.eat("zone") {
            true
        } else {
            self.pos = save;
            false
        }
    }

    fn ty(&mut self) -> Result<TrinoType, TypeError> {
        let start = {
            self.ws();
            self.pos
        };
        let name = self.word()?.to_ascii_lowercase();
        Ok(match name.as_str() {
            "boolean" => TrinoType::Boolean,
            "tinyint" => TrinoType::TinyInt,
            "smallint" => TrinoType::SmallInt,
            "integer" | "int" => TrinoType::Integer,
            "bigint" => TrinoType::BigInt,
            "real" => TrinoType::Real,
            "double" => TrinoType::Double,
            "decimal" => {
                let (mut precision, mut scale) = (38, 0);
                if self.eat("(") {
                    precision = self.number()?;
                    if self.eat(",") {
                        scale = self.number()?;
                    }
                    self.expect(")")?;
                }
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(self.out_of_range(start, format!("decimal({precision},{scale})")));
                }
                TrinoType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            }
            "varchar" | "char" => {
                if self.eat("(") {
                    self.number()?;
                    self.expect(")")?;
                }
                if name == "char" {
                    TrinoType::Char
                } else {
                    TrinoType::Varchar
                }
            }
            "varbinary" => TrinoType::Varbinary,
            "json" => TrinoType::Json,
            "date" => TrinoType::Date,
            "time" => {
                let precision = self.optional_precision(3)?;
                if self.with_time_zone() {
                    TrinoType::Other(self.s[start..self.pos].to_string())
                } else {
                    TrinoType::Time { precision }
                }
            }
            "timestamp" => {
                let precision = self.optional_precision(3)?;
                if self.with_time_zone() {
                    TrinoType::TimestampTz { precision }
                } else {
                    TrinoType::Timestamp { precision }
                }
            }
            "array" => {
                self.expect("(")?;
                let item = self.ty()?;
                self.expect(")")?;
                TrinoType::Array(Box::new(item))
            }
            "map" => {
                self.expect("(")?;
                let key = self.ty()?;
                self.expect(",")?;
                let value = self.ty()?;
                self.expect(")")?;
                TrinoType::Map(Box::new(key), Box::new(value))
            }
            "row" => {
                self.expect("(")?;
                let mut fields = Vec::new();
                loop {
                    // `row(bigint, varchar)` has anonymous fields; `row(a bigint)` named ones.
                    let save = self.pos;
                    let first = self.word()?;
                    self.ws();
                    let named = !(self.s[self.pos..].starts_with(',')
                        || self.s[self.pos..].starts_with(')')
                        || self.s[self.pos..].starts_with('('));
                    self.pos = save;
                    let field_name = if named {
                        self.word()?;
                        first
                    } else {
                        format!("field{}", fields.len())
                    };
                    let t = self.ty()?;
                    fields.push((field_name, t));
                    if !self.eat(",") {
                        break;
                    }
                }
                self.expect(")")?;
                TrinoType::Row(fields)
            }
            "unknown" => TrinoType::Unknown,
            _ => {
                // Keep the whole text of anything else (`interval day to second`, `uuid`…).
                let mut depth = 0usize;
                let rest = &self.s[self.pos..];
                let mut end = rest.len();
                for (i, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => {
                            end = i;
                            break;
                        }
                        ')' => depth -= 1,
                        ',' if depth == 0 => {
                            end = i;
                            break;
                        }
                        _ => {}
                    }
                }
                self.pos += end;
                TrinoType::Other(self.s[start..self.pos].trim_end().to_string())
            }
        })
    }
}

/// Decodes one column of JSON values (`null` for SQL NULL) into an Arrow array of
/// `t.arrow_type()`. The error says which value could not be read and why.
pub fn decode_column(t: &TrinoType, values: &[&Value]) -> Result<ArrayRef, TypeError> {
    macro_rules! build {
        ($builder:expr, $read:expr) => {{
            let mut b = $builder;
            for v in values {
                if v.is_null() {
                    b.append_null();
                } else {
                    b.append_value($read(v)?);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match t {
        TrinoType::Boolean => build!(BooleanBuilder::with_capacity(values.len()), |v: &Value| v
            .as_bool()
            .ok_or_else(|| bad(v, "a boolean"))),
        TrinoType::TinyInt => build!(Int8Builder::with_capacity(values.len()), int::<i8>),
        TrinoType::SmallInt => {
            build!(Int16Builder::with_capacity(values.len()), int::<i16>)
        }
        TrinoType::Integer => {
            build!(Int32Builder::with_capacity(values.len()), int::<i32>)
        }
        TrinoType::BigInt => build!(Int64Builder::with_capacity(values.len()), int::<i64>),
        TrinoType::Real => build!(Float32Builder::with_capacity(values.len()), |v| float(v)
            .map(|f| f as f32)),
        TrinoType::Double => build!(Float64Builder::with_capacity(values.len()), float),
        TrinoType::Decimal { precision, scale } => {
            let b = Decimal128Builder::with_capacity(values.len())
                .with_precision_and_scale(*precision, *scale)?;
            build!(b, |v| decimal(v, *scale))
        }
        TrinoType::Varchar | TrinoType::Char | TrinoType::Json | TrinoType::Other(_) => {
            build!(StringBuilder::with_capacity(values.len(), 0), text)
        }
        TrinoType::Varbinary => build!(BinaryBuilder::with_capacity(values.len(), 0), |v| {
            BASE64.decode(text(v)?).map_err(|e| invalid(v, "base64", e))
        }),
        TrinoType::Date => build!(Date32Builder::with_capacity(values.len()), |v| {
            let s = text(v)?;
            let d =
                NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| invalid(v, "a date", e))?;
            Ok::<i32, TypeError>(days_since_epoch(d))
        }),
        TrinoType::Time { precision } => {
            if *precision <= 6 {
                build!(Time64MicrosecondBuilder::with_capacity(values.len()), |v| {
                    time_nanos(v).map(|n| n / 1_000)
                })
            } else {
                build!(
                    Time64NanosecondBuilder::with_capacity(values.len()),
                    time_nanos
                )
            }
        }
        TrinoType::Timestamp { precision } | TrinoType::TimestampTz { precision } => {
            let with_zone = matches!(t, TrinoType::TimestampTz { .. });
            let read = |v: &Value| timestamp_nanos(v, with_zone);
            let zone: Option<Arc<str>> = with_zone.then(|| "UTC".into());
            match time_unit(*precision) {
                TimeUnit::Millisecond => build!(
                    TimestampMillisecondBuilder::with_capacity(values.len())
                        .with_timezone_opt(zone),
                    |v| read(v).map(|n| n.div_euclid(1_000_000))
                ),
                TimeUnit::Microsecond => build!(
                    TimestampMicrosecondBuilder::with_capacity(values.len())
                        .with_timezone_opt(zone),
                    |v| read(v).map(|n| n.div_euclid(1_000))
                ),
                _ => build!(
                    TimestampNanosecondBuilder::with_capacity(values.len()).with_timezone_opt(zone),
                    read
                ),
            }
        }
        TrinoType::Array(item) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut children = Vec::new();
            for v in values {
                if let Some(items) = v.as_array() {
                    children.extend(items.iter());
                } else if !v.is_null() {
                    return Err(bad(v, "an array"));
                }
                offsets.push(offset(children.len())?);
            }
            let child = decode_column(item, &children)?;
            Arc::new(ListArray::try_new(
                Arc::new(Field::new("item", item.arrow_type(), true)),
                OffsetBuffer::new(offsets.into()),
                child,
                nulls(values),
            )?)
        }
        TrinoType::Map(key, value) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            // Keys come as JSON object keys (strings); decode them as the key type.
            let mut keys: Vec<Value> = Vec::new();
            let mut vals: Vec<&Value> = Vec::new();
            for v in values {
                if let Some(entries) = v.as_object() {
                    for (k, val) in entries {
                        keys.push(map_key(key, k));
                        vals.push(val);
                    }
                } else if !v.is_null() {
                    return Err(bad(v, "an object (map)"));
                }
                offsets.push(offset(keys.len())?);
            }
            let key_refs: Vec<&Value> = keys.iter().collect();
            let entries = StructArray::try_new(
                map_fields(key, value),
                vec![decode_column(key, &key_refs)?, decode_column(value, &vals)?],
                None,
            )?;
            Arc::new(MapArray::try_new(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(map_fields(key, value)),
                    false,
                )),
                OffsetBuffer::new(offsets.into()),
                entries,
                nulls(values),
                false,
            )?)
        }
        TrinoType::Row(fields) => {
            let null = Value::Null;
            let mut columns = Vec::with_capacity(fields.len());
            for (i, (_, field_type)) in fields.iter().enumerate() {
                let mut children = Vec::with_capacity(values.len());
                for v in values {
                    match v {
                        Value::Array(items) => children.push(items.get(i).unwrap_or(&null)),
                        Value::Null => children.push(&null),
                        _ => return Err(bad(v, "an array (row)")),
                    }
                }
                columns.push(decode_column(field_type, &children)?);
            }
            Arc::new(StructArray::try_new(
                row_fields(fields),
                columns,
                nulls(values),
            )?)
        }
        TrinoType::Unknown => Arc::new(NullArray::new(values.len())),
    })
}

fn offset(len: usize) -> Result<i32, TypeError> {
    i32::try_from(len).map_err(|_| TypeError::TooManyNested)
}

fn nulls(values: &[&Value]) -> Option<NullBuffer> {
    values
        .iter()
        .any(|v| v.is_null())
        .then(|| NullBuffer::from_iter(values.iter().map(|v| !v.is_null())))
}

fn map_key(key: &TrinoType, k: &str) -> Value {
    match key {
        TrinoType::Varchar | TrinoType::Char | TrinoType::Json | TrinoType::Other(_) => {
            Value::String(k.to_string())
        }
        TrinoType::Date
        | TrinoType::Time { .. }
        | TrinoType::Timestamp { .. }
        | TrinoType::TimestampTz { .. }
        | TrinoType::Decimal { .. }
        | TrinoType::Varbinary => Value::String(k.to_string()),
        _ => serde_json::from_str(k).unwrap_or_else(|_| Value::String(k.to_string())),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let cut = (0..=80).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// `v` is not of the kind its type is sent as.
fn bad(v: &Value, expected: &'static str) -> TypeError {
    TypeError::Value {
        value: short(v),
        expected,
    }
}

/// `v` is of the right kind, but its content does not read as `expected`.
fn invalid(v: &Value, expected: &'static str, reason: impl ToString) -> TypeError {
    TypeError::Content {
        value: short(v),
        expected,
        reason: reason.to_string(),
    }
}

fn text(v: &Value) -> Result<&str, TypeError> {
    v.as_str().ok_or_else(|| bad(v, "a string"))
}

fn int<T: TryFrom<i64>>(v: &Value) -> Result<T, TypeError> {
    v.as_i64()
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| bad(v, "an integer in range"))
}

fn float(v: &Value) -> Result<f64, TypeError> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| bad(v, "a number")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(bad(v, "a number")),
        },
        _ => Err(bad(v, "a number")),
    }
}

/// `"-123.45"` with scale 2 → -12345. Scales differing from the column's are rescaled exactly
/// (padding) or refused (digits would be lost).
fn decimal(v: &Value, scale: i8) -> Result<i128, TypeError> {
    let s = text(v)?;
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale)
        .map_err(|_| invalid(v, "a decimal", "the column's scale is negative"))?;
    if frac.len() > scale && frac[scale..].bytes().any(|b| b != b'0') {
        return Err(invalid(
            v,
            "a decimal of the column's scale",
            format!("it has more than {scale} decimal places"),
        ));
    }
    let mut n: i128 = 0;
    let frac_digits = frac.bytes().chain(std::iter::repeat(b'0')).take(scale);
    for b in whole.bytes().chain(frac_digits) {
        if !b.is_ascii_digit() {
            return Err(bad(v, "a decimal"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i128::from(b - b'0')))
            .ok_or_else(|| invalid(v, "a decimal", "it overflows 128 bits"))?;
    }
    Ok(if negative { -n } else { n })
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

/// `"12:34:56.123456789012"` → nanoseconds since midnight (picoseconds truncated).
fn time_nanos(v: &Value) -> Result<i64, TypeError> {
    let s = text(v)?;
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let t = NaiveTime::parse_from_str(hms, "%H:%M:%S").map_err(|e| invalid(v, "a time", e))?;
    let secs = i64::from(chrono::Timelike::num_seconds_from_midnight(&t));
    Ok(secs * 1_000_000_000 + fraction_nanos(v, frac, "a time")?)
}

/// The fractional seconds `frac` of `v` (which should be `expected`) in nanoseconds.
fn fraction_nanos(v: &Value, frac: &str, expected: &'static str) -> Result<i64, TypeError> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(v, expected, "bad fractional seconds"));
    }
    let mut n = 0i64;
    for b in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
        n = n * 10 + i64::from(b - b'0');
    }
    Ok(n)
}

/// `"2025-01-31 12:34:56.789"` (and, with a zone, `"… UTC"`, `"… Asia/Seoul"`, `"… +09:00"`) →
/// nanoseconds since the Unix epoch (UTC for zoned values, wall clock for plain ones).
fn timestamp_nanos(v: &Value, with_zone: bool) -> Result<i64, TypeError> {
    let s = text(v)?;
    let (local, zone) = if with_zone {
        let mut parts = s.splitn(3, ' ');
        let (d, t) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        (
            &s[..d.len() + 1 + t.len()],
            Some(parts.next().unwrap_or("").trim()),
        )
    } else {
        (s, None)
    };
    let (dt, frac) = local.split_once('.').unwrap_or((local, ""));
    let naive = NaiveDateTime::parse_from_str(dt, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| invalid(v, "a timestamp", e))?;
    let frac = fraction_nanos(v, frac, "a timestamp")?;
    let seconds = match zone {
        None => naive.and_utc().timestamp(),
        Some(zone) => zoned_seconds(v, naive, zone)?,
    };
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .ok_or_else(|| invalid(v, "a timestamp", "it is out of the nanosecond range"))
}

/// Seconds since the epoch of `naive` in `zone`, both read from `v`.
fn zoned_seconds(v: &Value, naive: NaiveDateTime, zone: &str) -> Result<i64, TypeError> {
    let bad_zone = |reason: String| invalid(v, "a timestamp with time zone", reason);
    if zone == "UTC" || zone == "Z" {
        return Ok(naive.and_utc().timestamp());
    }
    if let Some(sign @ ('+' | '-')) = zone.chars().next() {
        let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        let (h, m): (i64, i64) = (
            h.parse()
                .map_err(|_| bad_zone(format!("bad zone offset {zone:?}")))?,
            m.parse()
                .map_err(|_| bad_zone(format!("bad zone offset {zone:?}")))?,
        );
        let offset = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
        return Ok(naive.and_utc().timestamp() - offset);
    }
    let tz: chrono_tz::Tz = zone
        .parse()
        .map_err(|_| bad_zone(format!("unknown time zone {zone:?}")))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| bad_zone(format!("{naive} does not exist in {zone}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Array, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
        Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, StringArray,
        Time64MicrosecondArray, Time64NanosecondArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use serde_json::json;

    fn decode(t: &str, values: Value) -> ArrayRef {
        let t = TrinoType::parse(t).unwrap();
        let values = values.as_array().unwrap().clone();
        let refs: Vec<&Value> = values.iter().collect();
        let array = decode_column(&t, &refs).unwrap();
        assert_eq!(array.data_type(), &t.arrow_type());
        array
    }

    fn decode_err(t: &str, value: Value) -> String {
        let t = TrinoType::parse(t).unwrap();
        decode_column(&t, &[&value]).unwrap_err().to_string()
    }

    #[test]
    fn parses_type_names() {
        assert_eq!(
            TrinoType::parse("decimal(12,2)").unwrap(),
            TrinoType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            TrinoType::parse("timestamp(6) with time zone").unwrap(),
            TrinoType::TimestampTz { precision: 6 }
        );
        assert_eq!(
            TrinoType::parse("map(varchar(3), array(integer))").unwrap(),
            TrinoType::Map(
                Box::new(TrinoType::Varchar),
                Box::new(TrinoType::Array(Box::new(TrinoType::Integer)))
            )
        );
        assert_eq!(
            TrinoType::parse(r#"row("a b" bigint, c row(d double))"#).unwrap(),
            TrinoType::Row(vec![
                ("a b".into(), TrinoType::BigInt),
                (
                    "c".into(),
                    TrinoType::Row(vec![("d".into(), TrinoType::Double)])
                )
            ])
        );
        assert_eq!(
            TrinoType::parse("row(bigint, varchar)").unwrap(),
            TrinoType::Row(vec![
                ("field0".into(), TrinoType::BigInt),
                ("field1".into(), TrinoType::Varchar)
            ])
        );
        assert_eq!(
            TrinoType::parse("interval day to second").unwrap(),
            TrinoType::Other("interval day to second".into())
        );
        assert_eq!(
            TrinoType::parse("time(3) with time zone").unwrap(),
            TrinoType::Other("time(3) with time zone".into())
        );
        assert!(TrinoType::parse("decimal(40,2)").is_err());
        assert!(TrinoType::parse("array(bigint").is_err());
    }

    #[test]
    fn type_errors_name_the_signature_and_the_place() {
        let err = TrinoType::parse("array(bigint").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected ")" at offset 12 of type "array(bigint", found the end"#
        );
        let err = TrinoType::parse("map(varchar, decimal(40,2))").unwrap_err();
        assert!(
            matches!(&err, TypeError::OutOfRange { offset: 13, what, .. } if what == "decimal(40,2)"),
            "{err}"
        );
        let err = TrinoType::parse("decimal(12, x)").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected a number at offset 12 of type "decimal(12, x)", found "x)""#
        );
        let t = TrinoType::parse("array(bigint)").unwrap();
        let err = decode_column(&t, &[&json!({"a": 1})]).unwrap_err();
        assert!(
            matches!(
                err,
                TypeError::Value {
                    expected: "an array",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn booleans_and_integers() {
        let b = decode("boolean", json!([true, null, false]));
        let b = b.as_any().downcast_ref::<BooleanArray>().unwrap();
        assert!(b.value(0) && b.is_null(1) && !b.value(2));
        let a = decode("tinyint", json!([-128, 127]));
        assert_eq!(
            a.as_any().downcast_ref::<Int8Array>().unwrap().values(),
            &[-128, 127]
        );
        let a = decode("smallint", json!([-32768]));
        assert_eq!(
            a.as_any().downcast_ref::<Int16Array>().unwrap().value(0),
            -32768
        );
        let a = decode("integer", json!([2147483647, null]));
        let a = a.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!((a.value(0), a.is_null(1)), (2147483647, true));
        let a = decode("bigint", json!([i64::MIN, i64::MAX]));
        assert_eq!(
            a.as_any().downcast_ref::<Int64Array>().unwrap().values(),
            &[i64::MIN, i64::MAX]
        );
        assert!(decode_err("tinyint", json!(300)).contains("not an integer in range"));
        assert!(decode_err("bigint", json!("x")).contains("not an integer"));
    }

    #[test]
    fn floats_with_special_values() {
        let a = decode("double", json!([1.5, "NaN", "Infinity", "-Infinity", null]));
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(a.value(0), 1.5);
        assert!(a.value(1).is_nan());
        assert_eq!(a.value(2), f64::INFINITY);
        assert_eq!(a.value(3), f64::NEG_INFINITY);
        assert!(a.is_null(4));
        let r = decode("real", json!([0.25, "NaN"]));
        let r = r.as_any().downcast_ref::<Float32Array>().unwrap();
        assert_eq!(r.value(0), 0.25);
        assert!(r.value(1).is_nan());
        assert!(decode_err("double", json!("inf")).contains("not a number"));
    }

    #[test]
    fn decimals_are_exact() {
        let a = decode(
            "decimal(38,2)",
            json!([
                "123.45",
                "-0.05",
                "7",
                "99999999999999999999999999999999999.99"
            ]),
        );
        let a = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(a.value(0), 12345);
        assert_eq!(a.value(1), -5);
        assert_eq!(a.value(2), 700);
        assert_eq!(
            a.value(3),
            9_999_999_999_999_999_999_999_999_999_999_999_999
        );
        assert_eq!(a.value_as_string(1), "-0.05");
        assert!(decode_err("decimal(10,2)", json!("1.234")).contains("more than 2 decimal places"));
        assert!(decode_err("decimal(10,2)", json!("1e5")).contains("not a decimal"));
    }

    #[test]
    fn strings_json_and_binary() {
        let a = decode("varchar(5)", json!(["héllo", null, ""]));
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((a.value(0), a.is_null(1), a.value(2)), ("héllo", true, ""));
        let a = decode("char(3)", json!(["ab "]));
        assert_eq!(a.as_string::<i32>().value(0), "ab ");
        let a = decode("json", json!([r#"{"a":[1,2]}"#]));
        assert_eq!(a.as_string::<i32>().value(0), r#"{"a":[1,2]}"#);
        let a = decode("varbinary", json!(["AAH/"]));
        let a = a.as_any().downcast_ref::<BinaryArray>().unwrap();
        assert_eq!(a.value(0), &[0u8, 1, 255]);
        assert!(decode_err("varbinary", json!("!!")).contains("not base64"));
        let a = decode("uuid", json!(["12151fd2-7586-11e9-8f9e-2a86e4085a59"]));
        assert_eq!(
            a.as_string::<i32>().value(0),
            "12151fd2-7586-11e9-8f9e-2a86e4085a59"
        );
    }

    #[test]
    fn dates_and_times() {
        let a = decode("date", json!(["1970-01-02", "1969-12-31", null]));
        let a = a.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!((a.value(0), a.value(1), a.is_null(2)), (1, -1, true));
        assert!(decode_err("date", json!("2025-02-30")).contains("not a date"));
        let a = decode("time(3)", json!(["01:02:03.456"]));
        let a = a.as_any().downcast_ref::<Time64MicrosecondArray>().unwrap();
        assert_eq!(a.value(0), 3_723_456_000);
        let a = decode("time(12)", json!(["00:00:00.123456789012"]));
        let a = a.as_any().downcast_ref::<Time64NanosecondArray>().unwrap();
        assert_eq!(a.value(0), 123_456_789);
    }

    #[test]
    fn timestamps_by_precision_and_zone() {
        let a = decode("timestamp(3)", json!(["1970-01-01 00:00:01.500", null]));
        let a = a
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!((a.value(0), a.is_null(1)), (1500, true));
        let a = decode("timestamp(6)", json!(["1969-12-31 23:59:59.999999"]));
        let a = a
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(a.value(0), -1);
        let a = decode("timestamp(9)", json!(["2025-01-01 00:00:00.000000001"]));
        let a = a
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(a.value(0), 1_735_689_600_000_000_001);
        let a = decode(
            "timestamp(3) with time zone",
            json!([
                "2025-01-01 09:00:00.000 Asia/Seoul",
                "2025-01-01 00:00:00.000 UTC",
                "2025-01-01 01:30:00.000 +01:30",
                "2024-12-31 19:00:00.000 America/New_York"
            ]),
        );
        assert_eq!(
            a.data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        let a = a
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert!(a.values().iter().all(|v| *v == 1_735_689_600_000));
        assert!(
            decode_err(
                "timestamp(3) with time zone",
                json!("2025-01-01 00:00:00 Mars/Base")
            )
            .contains("unknown time zone")
        );
    }

    #[test]
    fn arrays_maps_and_rows() {
        let a = decode("array(integer)", json!([[1, 2], null, [], [null]]));
        let a = a.as_list::<i32>();
        assert_eq!(a.value_length(0), 2);
        assert!(a.is_null(1));
        assert_eq!(a.value_length(2), 0);
        assert!(a.value(3).is_null(0));
        let m = decode(
            "map(varchar, double)",
            json!([{"a": 1.0, "b": "NaN"}, null]),
        );
        let m = m.as_map();
        assert_eq!(m.value_length(0), 2);
        assert!(m.is_null(1));
        assert_eq!(m.keys().as_string::<i32>().value(1), "b");
        let m = decode("map(bigint, varchar)", json!([{"7": "x"}]));
        assert_eq!(
            m.as_map()
                .keys()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            7
        );
        let r = decode(
            "row(id bigint, tags array(varchar))",
            json!([[1, ["a"]], null]),
        );
        let r = r.as_struct();
        assert_eq!(r.column_names(), vec!["id", "tags"]);
        assert!(r.is_null(1));
        assert_eq!(
            r.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            1
        );
        assert!(decode_err("array(bigint)", json!(5)).contains("not an array"));
    }
}
