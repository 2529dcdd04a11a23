//! GA4 tables: a property's dimensions and metrics as columns ([`Ga4Table`]), and the scan of
//! one pushed-down report ([`ReportTable`], [`ReportExec`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use connectors::ga4::api::{self, MetricType, RunReportRequest};
use connectors::ga4::{Column as ReportColumn, DATE_DIMENSION, Ga4Client, Report};
use datafusion::arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use super::translate::{self, Translation};

/// What a column of a GA4 table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A dimension: text, or a date for `date`.
    Dimension,
    /// A metric of this type.
    Metric(MetricType),
    /// A calendar-period dimension (`yearMonth` "202601", `isoYearIsoWeek` "202602", `year`
    /// "2026") read as the period's first day, so `date_trunc('month', date)` can be computed
    /// from it. Only in pushed-down reports, never a table column.
    PeriodStart,
}

/// A column of a GA4 table: its SQL name (snake_case of the API name) and its API name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ga4Column {
    /// The SQL name: `session_default_channel_group`, `custom_user_tier`.
    pub name: String,
    /// The API name: `sessionDefaultChannelGroup`, `customUser:tier`.
    pub api_name: String,
    /// Dimension or metric.
    pub kind: ColumnKind,
}

impl Ga4Column {
    /// Whether this is a metric.
    pub fn is_metric(&self) -> bool {
        matches!(self.kind, ColumnKind::Metric(_))
    }

    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        match self.kind {
            ColumnKind::Dimension if self.api_name == DATE_DIMENSION => DataType::Date32,
            ColumnKind::PeriodStart => DataType::Date32,
            ColumnKind::Dimension => DataType::Utf8,
            ColumnKind::Metric(t) if t.is_integer() => DataType::Int64,
            ColumnKind::Metric(_) => DataType::Float64,
        }
    }

    fn field(&self) -> Field {
        Field::new(&self.name, self.data_type(), true)
    }
}

/// `sessionDefaultChannelGroup` → `session_default_channel_group`, `customUser:tier` →
/// `custom_user_tier`: SQL folds unquoted identifiers to lower case, so camelCase would force
/// quoting everywhere.
pub fn sql_name(api_name: &str) -> String {
    let mut out = String::with_capacity(api_name.len() + 4);
    let mut prev_lower = false;
    for c in api_name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    out.trim_matches('_').to_string()
}

/// A GA4 property as a table: one column per dimension and metric (custom ones included).
///
/// Scanned on its own (no `GROUP BY`), it answers one report whose dimensions are the
/// dimension columns the query reads: `SELECT date, sessions FROM ga4.web` is sessions per day.
/// Aggregations over it are rewritten by [`super::Ga4Pushdown`] into a single report.
pub struct Ga4Table {
    pub(crate) property: String,
    pub(crate) client: Arc<Ga4Client>,
    pub(crate) columns: Vec<Ga4Column>,
    schema: SchemaRef,
    pub(crate) warnings: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for Ga4Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ga4Table")
            .field("property", &self.property)
            .field("columns", &self.columns.len())
            .finish_non_exhaustive()
    }
}

impl Ga4Table {
    /// The table of `property`, with the columns its metadata lists.
    pub fn new(property: String, client: Arc<Ga4Client>, metadata: &api::Metadata) -> Self {
        let mut seen = HashSet::new();
        let mut columns = Vec::new();
        let dims = metadata
            .dimensions
            .iter()
            .map(|d| (&d.api_name, ColumnKind::Dimension));
        let metrics = metadata
            .metrics
            .iter()
            .map(|m| (&m.api_name, ColumnKind::Metric(m.metric_type)));
        for (api_name, kind) in dims.chain(metrics) {
            let name = sql_name(api_name);
            // Two API names that fold to one SQL name: the first wins, the other is skipped
            // rather than making the table unusable.
            if name.is_empty() || !seen.insert(name.clone()) {
                tracing::warn!(property, api_name, "GA4 column name collides; skipped");
                continue;
            }
            columns.push(Ga4Column {
                name,
                api_name: api_name.clone(),
                kind,
            });
        }
        let schema = Arc::new(Schema::new(
            columns.iter().map(Ga4Column::field).collect::<Vec<_>>(),
        ));
        Ga4Table {
            property,
            client,
            columns,
            schema,
            warnings: Arc::default(),
        }
    }

    /// The column named `name` (SQL name).
    pub fn column(&self, name: &str) -> Option<&Ga4Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The `properties/<id>` this table reads.
    pub fn property(&self) -> &str {
        &self.property
    }
}

#[async_trait]
impl TableProvider for Ga4Table {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if translate::predicate(self, f, true).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut report = self.plain_report(projection, filters)?;
        if let Some(l) = limit {
            report.request.limit = Some(l as i64);
        }
        report.exec(None, None)
    }
}

impl Ga4Table {
    /// The report a plain scan reads: the projected dimensions and metrics, under the filters
    /// [`TableProvider::supports_filters_pushdown`] accepted.
    pub(crate) fn plain_report(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<ReportTable> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let fields: Vec<Ga4Column> = indices.iter().map(|i| self.columns[*i].clone()).collect();
        if fields.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "a scan of GA4 {} must read at least one dimension or metric column \
                 (COUNT(*) has no meaning on a GA4 table: count a dimension with \
                 COUNT(DISTINCT <dimension>))",
                self.property
            )));
        }
        let mut translation = Translation::default();
        for f in filters {
            let t = translate::predicate(self, f, true).ok_or_else(|| {
                DataFusionError::Internal(format!("GA4 filter {f} was accepted but not translated"))
            })?;
            translation.and(t);
        }
        let request = translation.into_request(
            fields.iter().filter(|c| !c.is_metric()),
            fields.iter().filter(|c| c.is_metric()),
        );
        Ok(ReportTable {
            property: self.property.clone(),
            client: Arc::clone(&self.client),
            request,
            fields,
            scalar: false,
            empty: translation.is_empty_range(),
            warnings: Arc::clone(&self.warnings),
        })
    }
}

/// One report, pushed down whole (dimensions, metrics, filters, order, limit), as a table whose
/// columns are the report's dimensions and metrics.
pub struct ReportTable {
    pub(crate) property: String,
    pub(crate) client: Arc<Ga4Client>,
    pub(crate) request: RunReportRequest,
    pub(crate) fields: Vec<Ga4Column>,
    /// An aggregate without `GROUP BY`: one row even when GA4 has none.
    pub(crate) scalar: bool,
    /// The date predicates admit no day: no request is sent.
    pub(crate) empty: bool,
    pub(crate) warnings: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for ReportTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportTable")
            .field("property", &self.property)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl ReportTable {
    /// The request this table sends.
    pub fn request(&self) -> &RunReportRequest {
        &self.request
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.fields.iter().map(Ga4Column::field).collect::<Vec<_>>(),
        ))
    }

    fn exec(
        &self,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        check_report_size(&self.property, &self.request, &self.fields)?;
        let mut request = self.request.clone();
        if let Some(l) = limit {
            let l = l as i64;
            request.limit = Some(request.limit.map_or(l, |r| r.min(l)));
        }
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.fields.len()).collect(),
        };
        let schema = self.schema();
        let schema = Arc::new(schema.project(&projection)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(ReportExec {
            property: self.property.clone(),
            client: Arc::clone(&self.client),
            request,
            fields: self.fields.clone(),
            projection,
            schema,
            scalar: self.scalar,
            empty: self.empty,
            properties,
            warnings: Arc::clone(&self.warnings),
        }))
    }
}

/// The most dimensions one `runReport` may ask for.
pub const MAX_DIMENSIONS: usize = 9;
/// The most metrics one `runReport` may ask for.
pub const MAX_METRICS: usize = 10;

/// GA4 refuses a report of more than [`MAX_DIMENSIONS`] dimensions or [`MAX_METRICS`]
/// metrics; say so before sending it, naming the columns.
fn check_report_size(
    property: &str,
    request: &RunReportRequest,
    fields: &[Ga4Column],
) -> Result<()> {
    let names = |metric: bool| {
        fields
            .iter()
            .filter(|f| f.is_metric() == metric)
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let over = if request.dimensions.len() > MAX_DIMENSIONS {
        Some((
            request.dimensions.len(),
            "dimensions",
            MAX_DIMENSIONS,
            names(false),
        ))
    } else if request.metrics.len() > MAX_METRICS {
        Some((request.metrics.len(), "metrics", MAX_METRICS, names(true)))
    } else {
        None
    };
    match over {
        Some((n, what, max, columns)) => Err(DataFusionError::External(Box::new(
            super::Ga4Refusal(format!(
                "the query needs a GA4 report of {property} with {n} {what} ({columns}), but one \
                 runReport accepts at most {max} {what}; select fewer GA4 columns (not SELECT *), \
                 or split the query in several and join their results"
            )),
        ))),
        None => Ok(()),
    }
}

#[async_trait]
impl TableProvider for ReportTable {
    fn schema(&self) -> SchemaRef {
        ReportTable::schema(self)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.exec(projection, limit)
    }
}

/// Sends one report (paged) when executed; shows the request in `EXPLAIN`.
pub struct ReportExec {
    property: String,
    client: Arc<Ga4Client>,
    request: RunReportRequest,
    fields: Vec<Ga4Column>,
    projection: Vec<usize>,
    schema: SchemaRef,
    scalar: bool,
    empty: bool,
    properties: Arc<PlanProperties>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for ReportExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportExec")
            .field("property", &self.property)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl ReportExec {
    /// The request this node sends.
    pub fn request(&self) -> &RunReportRequest {
        &self.request
    }

    /// Warnings (sampling, thresholding) of the reports this node fetched.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

impl DisplayAs for ReportExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let body = serde_json::to_string(&self.request).unwrap_or_default();
        if self.empty {
            write!(
                f,
                "Ga4ReportExec: {} (empty date range, not sent)",
                self.property
            )
        } else {
            write!(f, "Ga4ReportExec: {} runReport {body}", self.property)
        }
    }
}

impl ExecutionPlan for ReportExec {
    fn name(&self) -> &str {
        "Ga4ReportExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "Ga4ReportExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let client = Arc::clone(&self.client);
        let property = self.property.clone();
        let request = self.request.clone();
        let fields = self.fields.clone();
        let projection = self.projection.clone();
        let schema = Arc::clone(&self.schema);
        let (scalar, empty) = (self.scalar, self.empty);
        let warnings = Arc::clone(&self.warnings);
        let stream_schema = Arc::clone(&schema);
        let fut = async move {
            let report = if empty {
                None
            } else {
                let report = client
                    .run_report(&property, &request)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                if let Ok(mut w) = warnings.lock() {
                    for msg in &report.warnings {
                        if !w.contains(msg) {
                            w.push(msg.clone());
                        }
                    }
                }
                Some(report)
            };
            to_batch(report.as_ref(), &fields, &projection, schema, scalar)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            stream_schema,
            futures::stream::once(fut),
        )))
    }
}

/// The report's columns, in `fields` order, projected.
fn to_batch(
    report: Option<&Report>,
    fields: &[Ga4Column],
    projection: &[usize],
    schema: SchemaRef,
    scalar: bool,
) -> Result<RecordBatch> {
    let rows = report.map_or(0, Report::num_rows);
    let pad = scalar && rows == 0;
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(projection.len());
    for &i in projection {
        let field = &fields[i];
        let target = field.data_type();
        let column = report.and_then(|r| {
            let at = if field.is_metric() {
                r.metrics
                    .iter()
                    .position(|m| m.name == field.api_name)
                    .map(|j| r.dimensions.len() + j)
            } else {
                r.dimensions.iter().position(|d| *d == field.api_name)
            };
            at.map(|at| &r.columns[at])
        });
        let array: ArrayRef = match column {
            None if rows == 0 => {
                datafusion::arrow::array::new_null_array(&target, usize::from(pad))
            }
            None => {
                return Err(DataFusionError::Execution(format!(
                    "the GA4 report lacks column {}",
                    field.api_name
                )));
            }
            Some(ReportColumn::Text(v)) if field.kind == ColumnKind::PeriodStart => {
                Arc::new(Date32Array::from_iter(
                    v.iter()
                        .map(|p| period_start(&field.api_name, p).map(date32)),
                ))
            }
            Some(ReportColumn::Text(v)) => Arc::new(StringArray::from_iter_values(v)),
            Some(ReportColumn::Date(v)) => {
                Arc::new(Date32Array::from_iter(v.iter().map(|d| d.map(date32))))
            }
            Some(ReportColumn::Int64(v)) => Arc::new(Int64Array::from(v.clone())),
            Some(ReportColumn::Float64(v)) => Arc::new(Float64Array::from(v.clone())),
        };
        let array = if pad && array.is_empty() {
            datafusion::arrow::array::new_null_array(&target, 1)
        } else if array.data_type() != &target {
            cast(&array, &target)?
        } else {
            array
        };
        arrays.push(array);
    }
    let n = if pad { 1 } else { rows };
    Ok(RecordBatch::try_new_with_options(
        schema,
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// The first day of a `yearMonth`, `isoYearIsoWeek` or `year` value.
pub(crate) fn period_start(api_name: &str, value: &str) -> Option<chrono::NaiveDate> {
    let number = |range: std::ops::Range<usize>| value.get(range)?.parse::<u32>().ok();
    match (api_name, value.len()) {
        ("yearMonth", 6) => chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, number(4..6)?, 1),
        ("isoYearIsoWeek", 6) => chrono::NaiveDate::from_isoywd_opt(
            number(0..4)? as i32,
            number(4..6)?,
            chrono::Weekday::Mon,
        ),
        ("year", 4) => chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, 1, 1),
        _ => None,
    }
}

fn date32(d: chrono::NaiveDate) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::sql_name;

    #[test]
    fn periods_start_on_their_first_day() {
        use super::period_start;
        let d = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(period_start("yearMonth", "202602"), d(2026, 2, 1));
        assert_eq!(period_start("isoYearIsoWeek", "202602"), d(2026, 1, 5));
        assert_eq!(period_start("year", "2026"), d(2026, 1, 1));
        assert_eq!(period_start("yearMonth", "(other)"), None);
    }

    #[test]
    fn api_names_become_snake_case_sql_names() {
        assert_eq!(
            sql_name("sessionDefaultChannelGroup"),
            "session_default_channel_group"
        );
        assert_eq!(sql_name("customUser:tier"), "custom_user_tier");
        assert_eq!(sql_name("date"), "date");
        assert_eq!(sql_name("dateHour"), "date_hour");
        assert_eq!(
            sql_name("customEvent:coupon_value"),
            "custom_event_coupon_value"
        );
        assert_eq!(sql_name("eventCountPerUser"), "event_count_per_user");
    }
}
