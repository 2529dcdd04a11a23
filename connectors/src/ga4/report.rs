//! A report decoded into typed columns: dimension values are text (the `date` dimension a
//! calendar date), metric values follow their header's type (`TYPE_INTEGER` → `i64`, every other
//! type → `f64`).

use chrono::NaiveDate;

use super::api::{MetricHeader, PropertyQuota, ResponseMetaData, Row, RunReportResponse};
use super::error::Ga4Error;

/// The dimension whose `YYYYMMDD` values are decoded as dates.
pub const DATE_DIMENSION: &str = "date";

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// A dimension.
    Text(Vec<String>),
    /// The `date` dimension; `None` for values that are no date (`(other)`).
    Date(Vec<Option<NaiveDate>>),
    /// A `TYPE_INTEGER` metric; `None` for an empty value.
    Int64(Vec<Option<i64>>),
    /// Any other metric; `None` for an empty value.
    Float64(Vec<Option<f64>>),
}

impl Column {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::Date(v) => v.len(),
            Column::Int64(v) => v.len(),
            Column::Float64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole report (every page), typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Dimension names, in request order.
    pub dimensions: Vec<String>,
    /// Metric names and types, in request order.
    pub metrics: Vec<MetricHeader>,
    /// One column per dimension, then one per metric.
    pub columns: Vec<Column>,
    /// How many rows GA4 has for the request (from its first page).
    pub row_count: usize,
    /// `TOTAL` rows, as sent.
    pub totals: Vec<Row>,
    /// The property's quota after the last page, when asked for.
    pub property_quota: Option<PropertyQuota>,
    /// Sampling and thresholding notes the caller should pass on.
    pub warnings: Vec<String>,
    /// How many pages (HTTP requests) the report took.
    pub pages: usize,
}

impl Report {
    /// The number of rows decoded.
    pub fn num_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Decodes the pages of one report.
    pub fn from_pages(property: &str, pages: Vec<RunReportResponse>) -> Result<Report, Ga4Error> {
        let decode = |message: String| Ga4Error::Decode {
            method: "runReport",
            message,
        };
        let first = pages
            .first()
            .ok_or_else(|| decode("no page was returned".into()))?;
        let dimensions: Vec<String> = first
            .dimension_headers
            .iter()
            .map(|h| h.name.clone())
            .collect();
        let metrics = first.metric_headers.clone();
        let mut columns: Vec<Column> = dimensions
            .iter()
            .map(|d| {
                if d == DATE_DIMENSION {
                    Column::Date(Vec::new())
                } else {
                    Column::Text(Vec::new())
                }
            })
            .chain(metrics.iter().map(|m| {
                if m.metric_type.is_integer() {
                    Column::Int64(Vec::new())
                } else {
                    Column::Float64(Vec::new())
                }
            }))
            .collect();
        let mut warnings = Vec::new();
        let mut undated = 0usize;
        let mut totals = Vec::new();
        let mut property_quota = None;
        let row_count = first.row_count.unwrap_or(0).max(0) as usize;
        let pages_len = pages.len();
        for page in pages {
            if page.dimension_headers.len() != dimensions.len()
                || page.metric_headers.len() != metrics.len()
            {
                return Err(decode("pages disagree on their headers".into()));
            }
            for (i, row) in page.rows.iter().enumerate() {
                if row.dimension_values.len() != dimensions.len()
                    || row.metric_values.len() != metrics.len()
                {
                    return Err(decode(format!(
                        "row {i} has {} dimension and {} metric values for {} and {} headers",
                        row.dimension_values.len(),
                        row.metric_values.len(),
                        dimensions.len(),
                        metrics.len()
                    )));
                }
                let values = row.dimension_values.iter().chain(&row.metric_values);
                for ((value, column), name) in values.zip(columns.iter_mut()).zip(
                    dimensions
                        .iter()
                        .map(String::as_str)
                        .chain(metrics.iter().map(|m| m.name.as_str())),
                ) {
                    let v = value.value.as_str();
                    match column {
                        Column::Text(c) => c.push(v.to_string()),
                        Column::Date(c) => {
                            let date = NaiveDate::parse_from_str(v, "%Y%m%d").ok();
                            undated += usize::from(date.is_none());
                            c.push(date);
                        }
                        Column::Int64(c) => c.push(parse_metric(name, v, |s| {
                            s.parse::<i64>().ok().or_else(|| {
                                // GA4 may write an integer metric as "12.0"; only whole values pass.
                                s.parse::<f64>()
                                    .ok()
                                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                                    .map(|f| f as i64)
                            })
                        })?),
                        Column::Float64(c) => {
                            c.push(parse_metric(name, v, |s| s.parse::<f64>().ok())?)
                        }
                    }
                }
            }
            if !page.totals.is_empty() {
                totals = page.totals;
            }
            if page.property_quota.is_some() {
                property_quota = page.property_quota;
            }
            if let Some(meta) = &page.metadata {
                for w in metadata_warnings(property, meta) {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
            }
        }
        if undated > 0 {
            warnings.push(format!(
                "{undated} GA4 row(s) of {property} have a `date` that is not YYYYMMDD \
                 (e.g. \"(other)\"); their date is null"
            ));
        }
        Ok(Report {
            dimensions,
            metrics,
            columns,
            row_count,
            totals,
            property_quota,
            warnings,
            pages: pages_len,
        })
    }
}

fn parse_metric<T>(
    name: &str,
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Ga4Error> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(value).map(Some).ok_or_else(|| Ga4Error::Decode {
        method: "runReport",
        message: format!("metric {name} has value {value:?}, which is not of its header's type"),
    })
}

/// The notes a response's metadata calls for.
pub fn metadata_warnings(property: &str, meta: &ResponseMetaData) -> Vec<String> {
    let mut out = Vec::new();
    if meta.subject_to_thresholding == Some(true) {
        out.push(format!(
            "GA4 applied privacy thresholding to {property}: rows with few users may be \
             withheld, so totals can be understated"
        ));
    }
    for s in &meta.sampling_metadatas {
        let (read, space) = (
            s.samples_read_count.unwrap_or(0),
            s.sampling_space_size.unwrap_or(0),
        );
        let pct = if space > 0 {
            read as f64 * 100.0 / space as f64
        } else {
            0.0
        };
        out.push(format!(
            "GA4 sampled {property}: the report was computed from {read} of {space} events \
             ({pct:.1}%); values are estimates"
        ));
    }
    if meta.data_loss_from_other_row == Some(true) {
        out.push(format!(
            "GA4 folded some rows of {property} into an \"(other)\" row (high-cardinality report)"
        ));
    }
    out
}
