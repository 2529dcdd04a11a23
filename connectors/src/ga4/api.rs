//! The wire types of the GA4 Data API v1beta, as named in its discovery document
//! (`analyticsdata.v1beta.json`). Only the parts Tidemark sends or reads are modelled; `int64`
//! fields travel as JSON strings, as the discovery document declares them.

use serde::{Deserialize, Serialize};

/// `RunReportRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReportRequest {
    /// `properties/<id>`; only inside a batch (the URL carries it otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// The dimensions to group by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
    /// The metrics to compute for each group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// The dates the report covers (inclusive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub date_ranges: Vec<DateRange>,
    /// Filter on dimension values, applied before metrics are computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension_filter: Option<FilterExpression>,
    /// Filter on metric values, applied to the report rows (like SQL `HAVING`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_filter: Option<FilterExpression>,
    /// The first row to return (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "int64_opt")]
    pub offset: Option<i64>,
    /// How many rows to return (≤ 250,000 per request).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "int64_opt")]
    pub limit: Option<i64>,
    /// Extra aggregate rows (`TOTAL`, `MINIMUM`, `MAXIMUM`, `COUNT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_aggregations: Vec<MetricAggregation>,
    /// The row order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_bys: Vec<OrderBy>,
    /// ISO 4217 currency for currency metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<String>,
    /// Whether rows whose metrics are all zero are returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_empty_rows: Option<bool>,
    /// Ask for the property's quota state in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_property_quota: Option<bool>,
}

/// `BatchRunReportsRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRunReportsRequest {
    /// At most 5 reports of one property.
    #[serde(default)]
    pub requests: Vec<RunReportRequest>,
}

/// `Dimension`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dimension {
    /// The API name (`date`, `sessionDefaultChannelGroup`, `customEvent:tier`).
    pub name: String,
}

/// `Metric`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// The API name (`sessions`, `totalUsers`).
    pub name: String,
}

/// `DateRange`: `YYYY-MM-DD`, `NdaysAgo`, `yesterday` or `today`, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DateRange {
    /// The first day.
    pub start_date: String,
    /// The last day.
    pub end_date: String,
}

/// `MetricAggregation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricAggregation {
    /// Sum.
    Total,
    /// Minimum.
    Minimum,
    /// Maximum.
    Maximum,
    /// Count.
    Count,
}

/// `FilterExpression`: exactly one of its four members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FilterExpression {
    /// All must hold.
    AndGroup(FilterExpressionList),
    /// One must hold.
    OrGroup(FilterExpressionList),
    /// Must not hold.
    NotExpression(Box<FilterExpression>),
    /// A primitive filter.
    Filter(Filter),
}

impl FilterExpression {
    /// All of `exprs` (the expression itself when there is one).
    pub fn and(mut exprs: Vec<FilterExpression>) -> Option<FilterExpression> {
        match exprs.len() {
            0 => None,
            1 => exprs.pop(),
            _ => Some(FilterExpression::AndGroup(FilterExpressionList {
                expressions: exprs,
            })),
        }
    }
}

/// `FilterExpressionList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterExpressionList {
    /// The members.
    #[serde(default)]
    pub expressions: Vec<FilterExpression>,
}

/// `Filter`: a field and one kind of test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// The dimension or metric API name.
    pub field_name: String,
    /// The test.
    #[serde(flatten)]
    pub test: FilterTest,
}

/// The one-of member of `Filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FilterTest {
    /// `StringFilter`.
    StringFilter(StringFilter),
    /// `InListFilter`.
    InListFilter(InListFilter),
    /// `NumericFilter`.
    NumericFilter(NumericFilter),
    /// `BetweenFilter` (inclusive).
    BetweenFilter(BetweenFilter),
    /// `EmptyFilter`: the value is empty (`""` or `(not set)`).
    EmptyFilter(EmptyFilter),
}

/// `StringFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringFilter {
    /// How `value` is matched.
    pub match_type: MatchType,
    /// The string or regular expression.
    pub value: String,
    /// Whether case matters.
    #[serde(default)]
    pub case_sensitive: bool,
}

/// `StringFilter.matchType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchType {
    /// Equal.
    Exact,
    /// Prefix.
    BeginsWith,
    /// Suffix.
    EndsWith,
    /// Substring.
    Contains,
    /// The whole value matches the RE2 expression.
    FullRegexp,
    /// Part of the value matches the RE2 expression.
    PartialRegexp,
}

/// `InListFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InListFilter {
    /// The accepted values.
    pub values: Vec<String>,
    /// Whether case matters.
    #[serde(default)]
    pub case_sensitive: bool,
}

/// `NumericFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumericFilter {
    /// The comparison.
    pub operation: Operation,
    /// The right-hand side.
    pub value: NumericValue,
}

/// `NumericFilter.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    /// `=`.
    Equal,
    /// `<`.
    LessThan,
    /// `<=`.
    LessThanOrEqual,
    /// `>`.
    GreaterThan,
    /// `>=`.
    GreaterThanOrEqual,
}

/// `BetweenFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BetweenFilter {
    /// Lower bound (inclusive).
    pub from_value: NumericValue,
    /// Upper bound (inclusive).
    pub to_value: NumericValue,
}

/// `EmptyFilter` (no fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyFilter {}

/// `NumericValue`: an `int64Value` (a JSON string) or a `doubleValue`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NumericValue {
    /// An integer.
    Int64Value(#[serde(with = "int64")] i64),
    /// A float.
    DoubleValue(f64),
}

impl NumericValue {
    /// The value as a float.
    pub fn as_f64(&self) -> f64 {
        match self {
            NumericValue::Int64Value(v) => *v as f64,
            NumericValue::DoubleValue(v) => *v,
        }
    }
}

/// `OrderBy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderBy {
    /// Descending.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub desc: bool,
    /// By a dimension or a metric.
    #[serde(flatten)]
    pub by: OrderByField,
}

/// The one-of member of `OrderBy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OrderByField {
    /// `DimensionOrderBy`.
    Dimension(DimensionOrderBy),
    /// `MetricOrderBy`.
    Metric(MetricOrderBy),
}

/// `DimensionOrderBy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DimensionOrderBy {
    /// The dimension.
    pub dimension_name: String,
    /// How values compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<OrderType>,
}

/// `DimensionOrderBy.orderType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    /// By Unicode code point.
    Alphanumeric,
    /// By lower-cased code point.
    CaseInsensitiveAlphanumeric,
    /// As numbers.
    Numeric,
}

/// `MetricOrderBy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricOrderBy {
    /// The metric.
    pub metric_name: String,
}

/// `RunReportResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReportResponse {
    /// One per requested dimension, in order.
    #[serde(default)]
    pub dimension_headers: Vec<DimensionHeader>,
    /// One per requested metric, in order, with its type.
    #[serde(default)]
    pub metric_headers: Vec<MetricHeader>,
    /// This page's rows.
    #[serde(default)]
    pub rows: Vec<Row>,
    /// `TOTAL` aggregate rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub totals: Vec<Row>,
    /// `MAXIMUM` aggregate rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maximums: Vec<Row>,
    /// `MINIMUM` aggregate rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minimums: Vec<Row>,
    /// All rows of the report, whatever the page.
    #[serde(default)]
    pub row_count: Option<i64>,
    /// Sampling, thresholding, time zone…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ResponseMetaData>,
    /// The property's quota state, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_quota: Option<PropertyQuota>,
    /// `analyticsData#runReport`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `BatchRunReportsResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRunReportsResponse {
    /// One per request, in order.
    #[serde(default)]
    pub reports: Vec<RunReportResponse>,
    /// `analyticsData#batchRunReports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `DimensionHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DimensionHeader {
    /// The dimension.
    pub name: String,
}

/// `MetricHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricHeader {
    /// The metric.
    pub name: String,
    /// How its values are to be read.
    #[serde(rename = "type", default)]
    pub metric_type: MetricType,
}

/// `MetricType`: how a metric's string values are to be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricType {
    /// Unknown; read as a float.
    #[default]
    MetricTypeUnspecified,
    /// A count.
    TypeInteger,
    /// A ratio or average.
    TypeFloat,
    /// A duration in seconds.
    TypeSeconds,
    /// A duration in milliseconds.
    TypeMilliseconds,
    /// A duration in minutes.
    TypeMinutes,
    /// A duration in hours.
    TypeHours,
    /// A custom metric of standard type.
    TypeStandard,
    /// Money in the report's currency.
    TypeCurrency,
    /// A length in feet.
    TypeFeet,
    /// A length in miles.
    TypeMiles,
    /// A length in meters.
    TypeMeters,
    /// A length in kilometers.
    TypeKilometers,
}

impl MetricType {
    /// Whether values are integers (only `TYPE_INTEGER`); everything else is a float.
    pub fn is_integer(self) -> bool {
        self == MetricType::TypeInteger
    }
}

/// `Row`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Dimension values, in header order.
    #[serde(default)]
    pub dimension_values: Vec<Value>,
    /// Metric values, in header order.
    #[serde(default)]
    pub metric_values: Vec<Value>,
}

/// `DimensionValue` / `MetricValue`: always a string on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// `ResponseMetaData`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMetaData {
    /// Set when some rows were folded into an `(other)` row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss_from_other_row: Option<bool>,
    /// Set when rows were withheld to protect user privacy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_to_thresholding: Option<bool>,
    /// One per date range when the report was computed from a sample.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampling_metadatas: Vec<SamplingMetadata>,
    /// The property's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The currency of currency metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<String>,
    /// Why the report is empty, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_reason: Option<String>,
}

/// `SamplingMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingMetadata {
    /// Events read.
    #[serde(default, with = "int64_opt")]
    pub samples_read_count: Option<i64>,
    /// Events there were.
    #[serde(default, with = "int64_opt")]
    pub sampling_space_size: Option<i64>,
}

/// `PropertyQuota`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyQuota {
    /// Tokens per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<QuotaStatus>,
    /// Tokens per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_hour: Option<QuotaStatus>,
    /// Concurrent requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_requests: Option<QuotaStatus>,
    /// Server errors per project per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_errors_per_project_per_hour: Option<QuotaStatus>,
    /// Potentially thresholded requests per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub potentially_thresholded_requests_per_hour: Option<QuotaStatus>,
    /// Tokens per project per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_project_per_hour: Option<QuotaStatus>,
}

/// `QuotaStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// Used by this request.
    #[serde(default)]
    pub consumed: i64,
    /// Left.
    #[serde(default)]
    pub remaining: i64,
}

/// `Metadata`: the dimensions and metrics a property offers, custom ones included.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// `properties/<id>/metadata`.
    #[serde(default)]
    pub name: String,
    /// The dimensions.
    #[serde(default)]
    pub dimensions: Vec<DimensionMetadata>,
    /// The metrics.
    #[serde(default)]
    pub metrics: Vec<MetricMetadata>,
}

/// `DimensionMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DimensionMetadata {
    /// The name used in requests.
    pub api_name: String,
    /// The name in the GA4 interface.
    #[serde(default)]
    pub ui_name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// Whether the property defined it.
    #[serde(default)]
    pub custom_definition: bool,
    /// Its group in the interface.
    #[serde(default)]
    pub category: String,
}

/// `MetricMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricMetadata {
    /// The name used in requests.
    pub api_name: String,
    /// The name in the GA4 interface.
    #[serde(default)]
    pub ui_name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// Its value type.
    #[serde(rename = "type", default)]
    pub metric_type: MetricType,
    /// For calculated metrics, the formula.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Whether the property defined it.
    #[serde(default)]
    pub custom_definition: bool,
    /// Its group in the interface.
    #[serde(default)]
    pub category: String,
}

/// `int64` fields: JSON strings on the wire (numbers accepted when reading).
mod int64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Str(String),
            Num(i64),
        }
        match Wire::deserialize(d)? {
            Wire::Str(s) => s
                .parse()
                .map_err(|_| D::Error::custom(format!("{s:?} is not an int64"))),
            Wire::Num(n) => Ok(n),
        }
    }
}

/// Optional `int64` fields.
mod int64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::int64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::int64")] i64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}
