//! Dashboard specs: the JSON a dashboard sends, checked against the semantic model.
//!
//! ```json
//! {
//!   "measures":   ["orders.revenue", "orders.aov"],
//!   "dimensions": ["orders.channel"],
//!   "time": {
//!     "dimension": "orders.order_ts",
//!     "grain": "day",                              // hour|day|week|month|quarter|year (optional)
//!     "range": "last 7 days",                      // or ["2024-06-01", "2024-06-30"] (optional)
//!     "timezone": "Asia/Seoul",                    // IANA name, default UTC
//!     "now": "2024-06-16T00:00:00Z"                // optional reference instant for relative ranges
//!   },
//!   "filters": [
//!     {"member": "orders.channel", "operator": "in", "values": ["naver", "kakao"]},
//!     {"or": [{"member": "orders.device", "operator": "equals", "values": ["mobile"]},
//!             {"member": "orders.revenue", "operator": "gt", "values": [1000000]}]}
//!   ],
//!   "segments": ["orders.paid"],
//!   "analysis": {"type": "abc", "measure": "orders.revenue", "a": 0.8, "b": 0.95},
//!   "compare": "previousPeriod",                   // or "samePeriodLastYear"
//!   "order": [{"member": "orders.revenue", "direction": "desc"}],
//!   "limit": 100, "offset": 0, "total": true
//! }
//! ```
//!
//! Filter operators: `equals`, `notEquals`, `in`, `notIn`, `contains`, `notContains`,
//! `startsWith`, `endsWith` (strings; case-insensitive), `gt`, `gte`, `lt`, `lte`, `between`
//! (inclusive; numbers and times), `set`, `notSet` (no values). `notEquals`, `notIn` and
//! `notContains` keep rows where the member is NULL. A filter on a measure applies after
//! aggregation (SQL `HAVING`); `and`/`or` groups must not mix dimensions and measures. Time values
//! are dates (a whole day: `gt "2024-06-01"` starts on June 2) or date-times (local, or with an
//! offset).
//!
//! Analyses (one object or a list): `abc` {measure, a?, b?, partitionBy?}, `quadrant` {x, y,
//! xSplit?, ySplit? ("mean" default | "median" | number), labels?}, `share` {measure},
//! `runningTotal` {measure}, `rank` {measure}, `change` {measure} (against the previous time
//! bucket; needs a grain). See [`crate::spec::compile`] for the columns each adds.

pub mod compile;
pub mod time;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value as Json};

use crate::SqlError;
use crate::model::{DimensionType, Grain, MemberRef, SemanticModel};
use time::{LocalRange, TimeValue};

/// Limit applied when a spec sets none.
pub const DEFAULT_LIMIT: usize = 10_000;
/// The largest limit a spec may ask for.
pub const MAX_LIMIT: usize = 1_000_000;

/// A checked dashboard spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Measures to compute, in output order.
    pub measures: Vec<MemberRef>,
    /// Dimensions to group by, in output order.
    pub dimensions: Vec<MemberRef>,
    /// The time dimension, grain and range.
    pub time: Option<TimeQuery>,
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Segments, all of which must hold.
    pub segments: Vec<MemberRef>,
    /// Post-aggregation analyses.
    pub analyses: Vec<Analysis>,
    /// Comparison period.
    pub compare: Option<Compare>,
    /// Explicit ordering.
    pub order: Vec<OrderKey>,
    /// Row limit (explicit), if any.
    pub limit: Option<usize>,
    /// Rows to skip.
    pub offset: usize,
    /// Whether to append a grand-total row.
    pub total: bool,
}

/// The time part of a spec.
#[derive(Debug, Clone)]
pub struct TimeQuery {
    /// The time dimension.
    pub dimension: MemberRef,
    /// Bucket size, if the result is a time series.
    pub grain: Option<Grain>,
    /// The range, resolved in `timezone`.
    pub range: Option<LocalRange>,
    /// The zone that buckets and ranges are computed in.
    pub timezone: Tz,
}

impl TimeQuery {
    /// The name of the bucket column: `<dimension>.<grain>`.
    pub fn bucket_column(&self) -> Option<String> {
        self.grain.map(|g| format!("{}.{g}", self.dimension))
    }
}

/// A filter tree.
#[derive(Debug, Clone)]
pub enum Filter {
    /// One condition on a member.
    Member(MemberFilter),
    /// All must hold.
    And(Vec<Filter>),
    /// At least one must hold.
    Or(Vec<Filter>),
}

impl Filter {
    /// The members the filter mentions.
    pub fn members(&self) -> Vec<&MemberFilter> {
        match self {
            Filter::Member(m) => vec![m],
            Filter::And(fs) | Filter::Or(fs) => fs.iter().flat_map(Filter::members).collect(),
        }
    }

    /// Whether the filter is on measures (applies after aggregation).
    pub fn on_measures(&self) -> bool {
        self.members().first().is_some_and(|m| m.on_measure)
    }
}

/// A condition on one member.
#[derive(Debug, Clone)]
pub struct MemberFilter {
    /// The member.
    pub member: MemberRef,
    /// True for a measure, false for a dimension.
    pub on_measure: bool,
    /// The member's type (measures are numbers).
    pub kind: DimensionType,
    /// The operator.
    pub operator: Operator,
    /// The operands, checked against `kind`.
    pub values: Vec<Value>,
    /// Where the filter is in the spec (`filters[1].or[0]`).
    pub field: String,
}

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// = any of the values
    Equals,
    /// ≠ all of the values (or NULL)
    NotEquals,
    /// = any of the values
    In,
    /// ≠ all of the values (or NULL)
    NotIn,
    /// contains any of the values (case-insensitive)
    Contains,
    /// contains none of the values (or NULL)
    NotContains,
    /// starts with any of the values (case-insensitive)
    StartsWith,
    /// ends with any of the values (case-insensitive)
    EndsWith,
    /// >
    Gt,
    /// ≥
    Gte,
    /// <
    Lt,
    /// ≤
    Lte,
    /// between two values, inclusive
    Between,
    /// is not NULL
    Set,
    /// is NULL
    NotSet,
}

impl Operator {
    const ALL: [(&'static str, Operator); 15] = [
        ("equals", Operator::Equals),
        ("notEquals", Operator::NotEquals),
        ("in", Operator::In),
        ("notIn", Operator::NotIn),
        ("contains", Operator::Contains),
        ("notContains", Operator::NotContains),
        ("startsWith", Operator::StartsWith),
        ("endsWith", Operator::EndsWith),
        ("gt", Operator::Gt),
        ("gte", Operator::Gte),
        ("lt", Operator::Lt),
        ("lte", Operator::Lte),
        ("between", Operator::Between),
        ("set", Operator::Set),
        ("notSet", Operator::NotSet),
    ];

    fn parse(s: &str) -> Option<Operator> {
        Operator::ALL.iter().find(|(n, _)| *n == s).map(|(_, o)| *o)
    }

    fn name(self) -> &'static str {
        Operator::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("?", |(n, _)| n)
    }

    /// How many values the operator takes: (min, max).
    fn arity(self) -> (usize, usize) {
        match self {
            Operator::Set | Operator::NotSet => (0, 0),
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => (1, 1),
            Operator::Between => (2, 2),
            _ => (1, usize::MAX),
        }
    }

    fn accepts(self, kind: DimensionType, on_measure: bool) -> bool {
        match self {
            Operator::Contains
            | Operator::NotContains
            | Operator::StartsWith
            | Operator::EndsWith => kind == DimensionType::String && !on_measure,
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte | Operator::Between => {
                matches!(kind, DimensionType::Number | DimensionType::Time)
            }
            _ => true,
        }
    }
}

/// A filter operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// An integer.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A date or instant.
    Time(TimeValue),
}

/// An analysis applied to the aggregated rows.
#[derive(Debug, Clone)]
pub enum Analysis {
    /// ABC classification by a measure.
    Abc {
        /// The measure ranked.
        measure: MemberRef,
        /// Upper cumulative share of class A.
        a: f64,
        /// Upper cumulative share of class B.
        b: f64,
        /// Dimensions to classify within (default: the whole result).
        partition_by: Vec<MemberRef>,
    },
    /// Four-quadrant classification of two measures.
    Quadrant {
        /// The x measure.
        x: MemberRef,
        /// The y measure.
        y: MemberRef,
        /// Where x splits.
        x_split: Split,
        /// Where y splits.
        y_split: Split,
        /// Whether to add the star / cash cow / question mark / dog label.
        labels: bool,
    },
    /// Each row's share of the total (per time bucket when there is a grain).
    Share {
        /// The measure.
        measure: MemberRef,
    },
    /// Running total over time (or down the ranking by the measure without a grain).
    RunningTotal {
        /// The measure.
        measure: MemberRef,
    },
    /// Rank by the measure, largest first (per time bucket when there is a grain).
    Rank {
        /// The measure.
        measure: MemberRef,
    },
    /// Change against the previous time bucket of the same dimension values.
    Change {
        /// The measure.
        measure: MemberRef,
    },
}

/// Where a quadrant axis splits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// The mean of the result rows.
    Mean,
    /// The median of the result rows.
    Median,
    /// A fixed value.
    Fixed(f64),
}

/// Which period to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The period of equal length just before the range.
    PreviousPeriod,
    /// The range one year earlier.
    SamePeriodLastYear,
}

/// One ordering key.
#[derive(Debug, Clone)]
pub struct OrderKey {
    /// An output column, or a member that maps to one.
    pub column: String,
    /// Largest first.
    pub descending: bool,
    /// Where it is in the spec.
    pub field: String,
}

/// Parses and checks a spec. `now` resolves relative ranges when the spec has no `time.now`.
pub fn parse(model: &SemanticModel, json: &Json, now: DateTime<Utc>) -> Result<Spec, SqlError> {
    let top = object(
        json,
        "",
        &[
            "sources",
            "measures",
            "dimensions",
            "time",
            "filters",
            "segments",
            "analysis",
            "compare",
            "order",
            "limit",
            "offset",
            "total",
        ],
    )?;
    if let Some(sources) = top.get("sources") {
        for (i, s) in array(sources, "sources")?.iter().enumerate() {
            let field = format!("sources[{i}]");
            let name = string(s, &field)?;
            if model.source(name).is_none() {
                return Err(SqlError::bad(field, format!("unknown source `{name}`")));
            }
        }
    }
    let mut measures = Vec::new();
    for (i, m) in list(top.get("measures"), "measures")?.iter().enumerate() {
        let field = format!("measures[{i}]");
        let member = member(m, &field)?;
        if model.measure(&member).is_none() {
            return Err(unknown(model, &field, &member, "measure"));
        }
        if measures.contains(&member) {
            return Err(SqlError::bad(
                field,
                format!("measure `{member}` is listed twice"),
            ));
        }
        measures.push(member);
    }
    let mut dimensions = Vec::new();
    for (i, d) in list(top.get("dimensions"), "dimensions")?
        .iter()
        .enumerate()
    {
        let field = format!("dimensions[{i}]");
        let member = member(d, &field)?;
        if model.dimension(&member).is_none() {
            return Err(unknown(model, &field, &member, "dimension"));
        }
        if dimensions.contains(&member) {
            return Err(SqlError::bad(
                field,
                format!("dimension `{member}` is listed twice"),
            ));
        }
        dimensions.push(member);
    }
    let time = match top.get("time") {
        None | Some(Json::Null) => None,
        Some(t) => Some(parse_time(model, t, now)?),
    };
    if measures.is_empty() && dimensions.is_empty() && time.as_ref().and_then(|t| t.grain).is_none()
    {
        return Err(SqlError::bad(
            "measures",
            "ask for at least one measure or dimension",
        ));
    }
    let mut filters = Vec::new();
    for (i, f) in list(top.get("filters"), "filters")?.iter().enumerate() {
        filters.push(parse_filter(model, f, &format!("filters[{i}]"))?);
    }
    let mut segments = Vec::new();
    for (i, s) in list(top.get("segments"), "segments")?.iter().enumerate() {
        let field = format!("segments[{i}]");
        let member = member(s, &field)?;
        if model.segment(&member).is_none() {
            return Err(unknown(model, &field, &member, "segment"));
        }
        segments.push(member);
    }
    let analyses = match top.get("analysis") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, a)| {
                parse_analysis(model, a, &format!("analysis[{i}]"), &measures, &dimensions)
            })
            .collect::<Result<_, _>>()?,
        Some(a) => vec![parse_analysis(
            model,
            a,
            "analysis",
            &measures,
            &dimensions,
        )?],
    };
    let mut kinds = BTreeSet::new();
    for a in &analyses {
        let (kind, measure) = match a {
            Analysis::Abc { .. } => ("abc", None),
            Analysis::Quadrant { .. } => ("quadrant", None),
            Analysis::Share { measure } => ("share", Some(measure)),
            Analysis::RunningTotal { measure } => ("runningTotal", Some(measure)),
            Analysis::Rank { measure } => ("rank", Some(measure)),
            Analysis::Change { measure } => ("change", Some(measure)),
        };
        if !kinds.insert((kind, measure.cloned())) {
            return Err(SqlError::bad(
                "analysis",
                format!("`{kind}` is asked for twice"),
            ));
        }
        if kind == "change" && time.as_ref().and_then(|t| t.grain).is_none() {
            return Err(SqlError::bad(
                "analysis",
                "`change` needs a time grain (time.grain)",
            ));
        }
    }
    let compare = match top.get("compare") {
        None | Some(Json::Null) => None,
        Some(c) => {
            let kind = match c {
                Json::Object(_) => {
                    let o = object(c, "compare", &["type"])?;
                    string(o.get("type").unwrap_or(&Json::Null), "compare.type")?;
                    o.get("type").and_then(Json::as_str).unwrap_or_default()
                }
                _ => string(c, "compare")?,
            };
            let compare = match kind {
                "previousPeriod" | "previous_period" => Compare::PreviousPeriod,
                "samePeriodLastYear" | "same_period_last_year" => Compare::SamePeriodLastYear,
                other => {
                    return Err(SqlError::bad(
                        "compare",
                        format!(
                            "unknown comparison `{other}`: use previousPeriod or samePeriodLastYear"
                        ),
                    ));
                }
            };
            if time.as_ref().and_then(|t| t.range).is_none() {
                return Err(SqlError::bad(
                    "compare",
                    "a comparison needs a time range (time.range)",
                ));
            }
            if measures.is_empty() {
                return Err(SqlError::bad(
                    "compare",
                    "a comparison needs at least one measure",
                ));
            }
            Some(compare)
        }
    };
    let mut order = Vec::new();
    for (i, o) in list(top.get("order"), "order")?.iter().enumerate() {
        order.push(parse_order(o, &format!("order[{i}]"))?);
    }
    let limit = match top.get("limit") {
        None | Some(Json::Null) => None,
        Some(l) => {
            let n = count(l, "limit")?;
            if n == 0 || n > MAX_LIMIT {
                return Err(SqlError::bad(
                    "limit",
                    format!("limit must be 1..={MAX_LIMIT}"),
                ));
            }
            Some(n)
        }
    };
    let offset = match top.get("offset") {
        None | Some(Json::Null) => 0,
        Some(o) => count(o, "offset")?,
    };
    let total = match top.get("total") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(SqlError::bad("total", "expected true or false")),
    };
    if total && measures.is_empty() {
        return Err(SqlError::bad(
            "total",
            "a total row needs at least one measure",
        ));
    }
    Ok(Spec {
        measures,
        dimensions,
        time,
        filters,
        segments,
        analyses,
        compare,
        order,
        limit,
        offset,
        total,
    })
}

fn unknown(model: &SemanticModel, field: &str, member: &MemberRef, what: &str) -> SqlError {
    let hint = match model.source(&member.source) {
        None => format!("there is no source `{}`", member.source),
        Some(source) => {
            let names: Vec<&String> = match what {
                "measure" => source.measures.keys().collect(),
                "dimension" => source.dimensions.keys().collect(),
                _ => source.segments.keys().collect(),
            };
            let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
            format!("source `{}` has: {}", member.source, names.join(", "))
        }
    };
    SqlError::bad(field, format!("unknown {what} `{member}` ({hint})"))
}

fn object<'a>(
    v: &'a Json,
    field: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Json>, SqlError> {
    let Json::Object(map) = v else {
        return Err(SqlError::bad(or_root(field), "expected an object"));
    };
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let at = if field.is_empty() {
            key.clone()
        } else {
            format!("{field}.{key}")
        };
        return Err(SqlError::bad(
            at,
            format!(
                "unknown field `{key}`; expected one of: {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

fn or_root(field: &str) -> &str {
    if field.is_empty() { "spec" } else { field }
}

fn array<'a>(v: &'a Json, field: &str) -> Result<&'a Vec<Json>, SqlError> {
    v.as_array()
        .ok_or_else(|| SqlError::bad(field, "expected an array"))
}

fn list<'a>(v: Option<&'a Json>, field: &str) -> Result<&'a [Json], SqlError> {
    match v {
        None | Some(Json::Null) => Ok(&[]),
        Some(v) => array(v, field).map(Vec::as_slice),
    }
}

fn string<'a>(v: &'a Json, field: &str) -> Result<&'a str, SqlError> {
    v.as_str()
        .ok_or_else(|| SqlError::bad(field, "expected a string"))
}

fn count(v: &Json, field: &str) -> Result<usize, SqlError> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| SqlError::bad(field, "expected a non-negative integer"))
}

fn number(v: &Json, field: &str) -> Result<f64, SqlError> {
    v.as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| SqlError::bad(field, "expected a number"))
}

fn member(v: &Json, field: &str) -> Result<MemberRef, SqlError> {
    let s = string(v, field)?;
    MemberRef::parse(s).ok_or_else(|| {
        SqlError::bad(
            field,
            format!("`{s}` is not a member name; expected `source.member`"),
        )
    })
}

fn parse_time(model: &SemanticModel, t: &Json, now: DateTime<Utc>) -> Result<TimeQuery, SqlError> {
    let o = object(
        t,
        "time",
        &["dimension", "grain", "range", "timezone", "timeZone", "now"],
    )?;
    let dimension = member(o.get("dimension").unwrap_or(&Json::Null), "time.dimension")?;
    let Some((_, dim)) = model.dimension(&dimension) else {
        return Err(unknown(model, "time.dimension", &dimension, "dimension"));
    };
    if dim.kind != DimensionType::Time {
        return Err(SqlError::bad(
            "time.dimension",
            format!(
                "`{dimension}` is a {} dimension, not a time dimension",
                dim.kind
            ),
        ));
    }
    let grain = match o.get("grain") {
        None | Some(Json::Null) => None,
        Some(g) => {
            let name = string(g, "time.grain")?;
            let grain = Grain::parse(name).ok_or_else(|| {
                SqlError::bad(
                    "time.grain",
                    format!("unknown grain `{name}`: use hour, day, week, month, quarter or year"),
                )
            })?;
            if !dim.grains.contains(&grain) {
                let allowed: Vec<&str> = dim.grains.iter().map(|g| g.as_str()).collect();
                return Err(SqlError::bad(
                    "time.grain",
                    format!(
                        "`{dimension}` has no `{name}` grain; it has: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            Some(grain)
        }
    };
    let timezone = match o.get("timezone").or_else(|| o.get("timeZone")) {
        None | Some(Json::Null) => Tz::UTC,
        Some(z) => {
            let name = string(z, "time.timezone")?;
            name.parse::<Tz>().map_err(|_| {
                SqlError::bad(
                    "time.timezone",
                    format!("unknown time zone `{name}` (use an IANA name such as Asia/Seoul)"),
                )
            })?
        }
    };
    let now = match o.get("now") {
        None | Some(Json::Null) => now,
        Some(n) => {
            let s = string(n, "time.now")?;
            match TimeValue::parse(s) {
                Some(TimeValue::Instant(t)) => t,
                Some(other) => time::to_instant(other.local_start(timezone), timezone),
                None => {
                    return Err(SqlError::bad(
                        "time.now",
                        format!("`{s}` is not a date-time"),
                    ));
                }
            }
        }
    };
    let range = match o.get("range") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(time::relative(s, now, timezone, "time.range")?),
        Some(Json::Array(bounds)) if bounds.len() == 2 => {
            let bound = |i: usize| -> Result<TimeValue, SqlError> {
                let field = format!("time.range[{i}]");
                let s = string(&bounds[i], &field)?;
                TimeValue::parse(s).ok_or_else(|| {
                    SqlError::bad(
                        field,
                        format!("`{s}` is not a date (2024-06-01) or date-time"),
                    )
                })
            };
            Some(time::absolute(
                bound(0)?,
                bound(1)?,
                timezone,
                "time.range",
            )?)
        }
        Some(_) => {
            return Err(SqlError::bad(
                "time.range",
                "expected a relative range such as \"last 7 days\" or [from, to]",
            ));
        }
    };
    if grain.is_none() && range.is_none() {
        return Err(SqlError::bad("time", "give a grain, a range or both"));
    }
    Ok(TimeQuery {
        dimension,
        grain,
        range,
        timezone,
    })
}

fn parse_filter(model: &SemanticModel, f: &Json, field: &str) -> Result<Filter, SqlError> {
    let Json::Object(map) = f else {
        return Err(SqlError::bad(field, "expected a filter object"));
    };
    for group in ["and", "or"] {
        if let Some(items) = map.get(group) {
            object(f, field, &[group])?;
            let field = format!("{field}.{group}");
            let items = array(items, &field)?;
            if items.is_empty() {
                return Err(SqlError::bad(
                    field,
                    "an and/or group needs at least one filter",
                ));
            }
            let filters = items
                .iter()
                .enumerate()
                .map(|(i, f)| parse_filter(model, f, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let on_measures: BTreeSet<bool> = filters
                .iter()
                .flat_map(|f| f.members().into_iter().map(|m| m.on_measure))
                .collect();
            if on_measures.len() > 1 {
                return Err(SqlError::bad(
                    field,
                    "a group cannot mix dimension and measure filters (measures are filtered after aggregation)",
                ));
            }
            return Ok(if group == "and" {
                Filter::And(filters)
            } else {
                Filter::Or(filters)
            });
        }
    }
    let o = object(
        f,
        field,
        &["member", "dimension", "operator", "values", "value"],
    )?;
    let member_field = format!("{field}.member");
    let member = member(
        o.get("member")
            .or_else(|| o.get("dimension"))
            .unwrap_or(&Json::Null),
        &member_field,
    )?;
    let (on_measure, kind) = if let Some((_, d)) = model.dimension(&member) {
        (false, d.kind)
    } else if model.measure(&member).is_some() {
        (true, DimensionType::Number)
    } else {
        return Err(SqlError::bad(
            member_field,
            format!(
                "unknown member `{member}`: a filter needs a dimension or measure of the model"
            ),
        ));
    };
    let op_field = format!("{field}.operator");
    let op_name = string(o.get("operator").unwrap_or(&Json::Null), &op_field)?;
    let operator = Operator::parse(op_name).ok_or_else(|| {
        let names: Vec<&str> = Operator::ALL.iter().map(|(n, _)| *n).collect();
        SqlError::bad(
            &op_field,
            format!(
                "unknown operator `{op_name}`; use one of: {}",
                names.join(", ")
            ),
        )
    })?;
    if !operator.accepts(kind, on_measure) {
        return Err(SqlError::bad(
            op_field,
            format!(
                "`{}` does not apply to {} `{member}`",
                operator.name(),
                if on_measure {
                    "measure".to_string()
                } else {
                    format!("{kind} dimension")
                }
            ),
        ));
    }
    let values_field = format!("{field}.values");
    let raw: Vec<&Json> = match (o.get("values"), o.get("value")) {
        (Some(Json::Array(vs)), None) => vs.iter().collect(),
        (None, Some(v)) => vec![v],
        (None, None) => Vec::new(),
        _ => {
            return Err(SqlError::bad(
                values_field,
                "give `values` as an array (or one `value`)",
            ));
        }
    };
    let (min, max) = operator.arity();
    if raw.len() < min || raw.len() > max {
        let want = match (min, max) {
            (0, 0) => "no values".to_string(),
            (a, b) if a == b => format!("exactly {a} value{}", if a == 1 { "" } else { "s" }),
            (a, _) => format!("at least {a} value"),
        };
        return Err(SqlError::bad(
            values_field,
            format!("`{}` takes {want}, got {}", operator.name(), raw.len()),
        ));
    }
    let values = raw
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_value(v, kind, &format!("{values_field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Filter::Member(MemberFilter {
        member,
        on_measure,
        kind,
        operator,
        values,
        field: field.to_string(),
    }))
}

fn parse_value(v: &Json, kind: DimensionType, field: &str) -> Result<Value, SqlError> {
    let bad = |want: &str| SqlError::bad(field, format!("expected {want}, got {v}"));
    match kind {
        DimensionType::String => v
            .as_str()
            .map(|s| Value::Str(s.to_string()))
            .ok_or_else(|| bad("a string")),
        DimensionType::Number => match v {
            Json::Number(n) => n
                .as_i64()
                .map(Value::Int)
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(Value::Float))
                .ok_or_else(|| bad("a number")),
            Json::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .or_else(|_| s.trim().parse::<f64>().map(Value::Float))
                .ok()
                .filter(|v| !matches!(v, Value::Float(f) if !f.is_finite()))
                .ok_or_else(|| bad("a number")),
            _ => Err(bad("a number")),
        },
        DimensionType::Boolean => match v {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
            _ => Err(bad("true or false")),
        },
        DimensionType::Time => v
            .as_str()
            .and_then(TimeValue::parse)
            .map(Value::Time)
            .ok_or_else(|| bad("a date (2024-06-01) or date-time (2024-06-01T09:00:00)")),
    }
}

fn parse_analysis(
    model: &SemanticModel,
    a: &Json,
    field: &str,
    measures: &[MemberRef],
    dimensions: &[MemberRef],
) -> Result<Analysis, SqlError> {
    let Json::Object(map) = a else {
        return Err(SqlError::bad(field, "expected an analysis object"));
    };
    let kind = string(
        map.get("type").unwrap_or(&Json::Null),
        &format!("{field}.type"),
    )?;
    let measure_at = |key: &str| -> Result<MemberRef, SqlError> {
        let f = format!("{field}.{key}");
        let m = member(map.get(key).unwrap_or(&Json::Null), &f)?;
        if model.measure(&m).is_none() {
            return Err(unknown(model, &f, &m, "measure"));
        }
        if !measures.contains(&m) {
            return Err(SqlError::bad(
                f,
                format!("`{m}` must also be listed in measures"),
            ));
        }
        Ok(m)
    };
    let threshold = |key: &str, default: f64| -> Result<f64, SqlError> {
        match map.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(v) => {
                let f = format!("{field}.{key}");
                let x = number(v, &f)?;
                if (0.0..=1.0).contains(&x) {
                    Ok(x)
                } else {
                    Err(SqlError::bad(f, "expected a share between 0 and 1"))
                }
            }
        }
    };
    let split = |key: &str| -> Result<Split, SqlError> {
        let f = format!("{field}.{key}");
        match map.get(key) {
            None | Some(Json::Null) => Ok(Split::Mean),
            Some(Json::String(s)) if s == "mean" => Ok(Split::Mean),
            Some(Json::String(s)) if s == "median" => Ok(Split::Median),
            Some(Json::Object(o)) if o.len() == 1 && o.contains_key("value") => {
                Ok(Split::Fixed(number(&o["value"], &format!("{f}.value"))?))
            }
            Some(v @ Json::Number(_)) => Ok(Split::Fixed(number(v, &f)?)),
            Some(_) => Err(SqlError::bad(
                f,
                "expected \"mean\", \"median\" or a number",
            )),
        }
    };
    Ok(match kind {
        "abc" => {
            object(a, field, &["type", "measure", "a", "b", "partitionBy"])?;
            let a_ = threshold("a", crate::functions::abc::DEFAULT_A)?;
            let b_ = threshold("b", crate::functions::abc::DEFAULT_B)?;
            if a_ > b_ {
                return Err(SqlError::bad(format!("{field}.a"), "a must not be above b"));
            }
            let mut partition_by = Vec::new();
            for (i, p) in list(map.get("partitionBy"), &format!("{field}.partitionBy"))?
                .iter()
                .enumerate()
            {
                let f = format!("{field}.partitionBy[{i}]");
                let d = member(p, &f)?;
                if !dimensions.contains(&d) {
                    return Err(SqlError::bad(
                        f,
                        format!("`{d}` must also be listed in dimensions"),
                    ));
                }
                partition_by.push(d);
            }
            Analysis::Abc {
                measure: measure_at("measure")?,
                a: a_,
                b: b_,
                partition_by,
            }
        }
        "quadrant" => {
            object(a, field, &["type", "x", "y", "xSplit", "ySplit", "labels"])?;
            let labels = match map.get("labels") {
                None | Some(Json::Null) => false,
                Some(Json::Bool(b)) => *b,
                Some(_) => {
                    return Err(SqlError::bad(
                        format!("{field}.labels"),
                        "expected true or false",
                    ));
                }
            };
            Analysis::Quadrant {
                x: measure_at("x")?,
                y: measure_at("y")?,
                x_split: split("xSplit")?,
                y_split: split("ySplit")?,
                labels,
            }
        }
        "share" | "runningTotal" | "rank" | "change" => {
            object(a, field, &["type", "measure"])?;
            let measure = measure_at("measure")?;
            match kind {
                "share" => Analysis::Share { measure },
                "runningTotal" => Analysis::RunningTotal { measure },
                "rank" => Analysis::Rank { measure },
                _ => Analysis::Change { measure },
            }
        }
        other => {
            return Err(SqlError::bad(
                format!("{field}.type"),
                format!(
                    "unknown analysis `{other}`: use abc, quadrant, share, runningTotal, rank or change"
                ),
            ));
        }
    })
}

fn parse_order(o: &Json, field: &str) -> Result<OrderKey, SqlError> {
    let (column, direction) = match o {
        Json::Object(_) => {
            let map = object(o, field, &["member", "direction"])?;
            (
                string(
                    map.get("member").unwrap_or(&Json::Null),
                    &format!("{field}.member"),
                )?,
                map.get("direction"),
            )
        }
        Json::Array(pair) if pair.len() == 2 => {
            (string(&pair[0], &format!("{field}[0]"))?, Some(&pair[1]))
        }
        _ => {
            return Err(SqlError::bad(
                field,
                "expected {\"member\": ..., \"direction\": \"asc\"|\"desc\"}",
            ));
        }
    };
    let descending = match direction {
        None | Some(Json::Null) => false,
        Some(Json::String(d)) if d.eq_ignore_ascii_case("asc") => false,
        Some(Json::String(d)) if d.eq_ignore_ascii_case("desc") => true,
        Some(_) => {
            return Err(SqlError::bad(
                format!("{field}.direction"),
                "expected \"asc\" or \"desc\"",
            ));
        }
    };
    Ok(OrderKey {
        column: column.to_string(),
        descending,
        field: field.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn model() -> SemanticModel {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/commerce.toml");
        SemanticModel::load(&[path]).unwrap()
    }

    fn err(spec: Json) -> (String, String) {
        match parse(&model(), &spec, Utc::now()) {
            Err(SqlError::BadRequest { field, message }) => (field, message),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn a_full_spec_parses() {
        let spec = json!({
            "measures": ["orders.revenue", "orders.aov"],
            "dimensions": ["orders.channel"],
            "time": {"dimension": "orders.order_ts", "grain": "day", "range": "last 7 days",
                     "timezone": "Asia/Seoul", "now": "2024-06-16T00:00:00Z"},
            "filters": [{"member": "orders.channel", "operator": "in", "values": ["naver", "kakao"]},
                        {"or": [{"member": "orders.device", "operator": "equals", "values": ["mobile"]},
                                {"member": "orders.items", "operator": "gt", "values": [2]}]},
                        {"member": "orders.revenue", "operator": "gte", "value": 100}],
            "segments": ["orders.paid"],
            "analysis": [{"type": "abc", "measure": "orders.revenue"}, {"type": "share", "measure": "orders.revenue"}],
            "compare": "previousPeriod",
            "order": [{"member": "orders.revenue", "direction": "desc"}],
            "limit": 10, "offset": 5, "total": true
        });
        let spec = parse(&model(), &spec, Utc::now()).unwrap();
        assert_eq!(spec.measures.len(), 2);
        assert!(spec.filters[2].on_measures());
        assert_eq!(
            spec.time.unwrap().bucket_column().unwrap(),
            "orders.order_ts.day"
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let (f, m) = err(json!({"measures": ["orders.revenu"]}));
        assert_eq!(f, "measures[0]");
        assert!(
            m.contains("unknown measure `orders.revenu`") && m.contains("revenue"),
            "{m}"
        );
        let (f, m) = err(json!({"measures": ["orders.revenue"],
            "filters": [{"member": "orders.channel", "operator": "like", "values": ["x"]}]}));
        assert_eq!(f, "filters[0].operator");
        assert!(m.contains("unknown operator `like`"), "{m}");
        let (f, _) = err(json!({"measures": ["orders.revenue"],
            "filters": [{"and": [{"member": "orders.items", "operator": "gt", "values": ["many"]}]}]}));
        assert_eq!(f, "filters[0].and[0].values[0]");
        let (f, _) = err(
            json!({"measures": ["orders.revenue"], "time": {"dimension": "orders.date", "grain": "hour"}}),
        );
        assert_eq!(f, "time.grain");
        let (f, _) = err(
            json!({"measures": ["orders.revenue"], "time": {"dimension": "orders.date", "range": "last blue moon"}}),
        );
        assert_eq!(f, "time.range");
        let (f, _) = err(json!({"measures": ["orders.revenue"], "colour": 1}));
        assert_eq!(f, "colour");
        let (f, _) = err(json!({"measures": ["orders.revenue"], "compare": "previousPeriod"}));
        assert_eq!(f, "compare");
        let (f, _) = err(json!({"measures": ["orders.revenue"],
            "filters": [{"member": "orders.revenue", "operator": "contains", "values": ["1"]}]}));
        assert_eq!(f, "filters[0].operator");
        let (f, _) = err(json!({"measures": ["orders.revenue"],
            "filters": [{"member": "orders.channel", "operator": "between", "values": ["a"]}]}));
        assert_eq!(f, "filters[0].operator");
        let (f, _) = err(json!({"measures": ["orders.revenue"],
            "filters": [{"member": "orders.items", "operator": "between", "values": [1]}]}));
        assert_eq!(f, "filters[0].values");
        let (f, _) = err(
            json!({"measures": ["orders.revenue"], "analysis": {"type": "abc", "measure": "orders.aov"}}),
        );
        assert_eq!(f, "analysis.measure");
        let (f, _) = err(
            json!({"measures": ["orders.revenue"], "time": {"dimension": "orders.date", "range": "today", "timezone": "Mars/Base"}}),
        );
        assert_eq!(f, "time.timezone");
        let (f, _) = err(json!({"measures": ["orders.revenue"], "limit": -1}));
        assert_eq!(f, "limit");
        let (f, _) = err(json!({"measures": ["orders.revenue"], "filters": [{"or": [
            {"member": "orders.channel", "operator": "equals", "values": ["naver"]},
            {"member": "orders.revenue", "operator": "gt", "values": [1]}]}]}));
        assert_eq!(f, "filters[0].or");
    }
}
