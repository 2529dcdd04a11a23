//! The optimizer rule that turns the GA4 part of a plan into one `runReport`.
//!
//! It recognises `[Limit] [Sort] [Projection] [Filter] Aggregate (Filter | Projection |
//! SubqueryAlias)* TableScan(GA4 table)` and, when GA4 can compute the aggregate exactly,
//! replaces it with a scan of a [`ReportTable`] that carries the whole request: GROUP BY
//! dimensions → `dimensions`, aggregated metrics → `metrics`, WHERE on dimensions →
//! `dimensionFilter`, date predicates → `dateRanges`, HAVING on metrics → `metricFilter`,
//! ORDER BY → `orderBys`, LIMIT → `limit`. DataFusion then only renames columns (and re-sorts
//! the already sorted rows). GROUP BY `date_trunc(unit, date)` becomes the matching calendar
//! dimension; `[Limit] Sort [Projection]` over a plain GA4 scan sends its order and limit.
//!
//! When GA4 cannot compute the aggregate exactly (a GROUP BY expression or WHERE predicate GA4
//! cannot express), the plan stays as it is only if re-aggregating GA4 rows is exact: sums of
//! additive metrics ([`super::additivity`]) and distinct counts / min / max of dimensions.
//! Otherwise the query is refused with an explanation. A metric is never re-aggregated by
//! DataFusion from finer rows in a way that changes its meaning.

use std::sync::Arc;

use connectors::ga4::DATE_DIMENSION;
use connectors::ga4::api::{DimensionOrderBy, MetricOrderBy, OrderBy, OrderByField, OrderType};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, Cast, Expr, ExprSchemable, Filter, Limit, LogicalPlan, Projection, Sort,
    SubqueryAlias, TableScan, TableScanBuilder,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::additivity::{Additivity, additivity, summable_across};
use super::table::{ColumnKind, Ga4Column, Ga4Table, ReportTable};
use super::translate::{Translation, predicate_with};

/// Rewrites aggregations over GA4 tables into single pushed-down reports; refuses those that
/// would re-aggregate non-additive metrics. Register with [`super::register`].
#[derive(Debug, Default)]
pub struct Ga4Pushdown;

impl OptimizerRule for Ga4Pushdown {
    fn name(&self) -> &str {
        "ga4_pushdown"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down_with_subqueries(|node| match plan_node(&node)? {
            Outcome::Replace(new) => Ok(Transformed::new(new, true, TreeNodeRecursion::Jump)),
            Outcome::Keep => Ok(Transformed::new(node, false, TreeNodeRecursion::Jump)),
            Outcome::NotGa4 => Ok(Transformed::no(node)),
        })
    }
}

enum Outcome {
    /// The node (and what is below it) became one report.
    Replace(LogicalPlan),
    /// An aggregate over GA4 rows that DataFusion may compute itself.
    Keep,
    /// Nothing for this rule here.
    NotGa4,
}

fn plan_err(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(super::Ga4Refusal(message)))
}

/// The layers above an aggregate that can ride along in the report.
struct Upper<'a> {
    limit: Option<&'a Limit>,
    sort: Option<&'a Sort>,
    projection: Option<&'a Projection>,
    having: Option<&'a Filter>,
}

fn plan_node(node: &LogicalPlan) -> Result<Outcome> {
    let mut cur = node;
    let mut upper = Upper {
        limit: None,
        sort: None,
        projection: None,
        having: None,
    };
    if let LogicalPlan::Limit(l) = cur {
        upper.limit = Some(l);
        cur = &l.input;
    }
    if let LogicalPlan::Sort(s) = cur {
        upper.sort = Some(s);
        cur = &s.input;
    }
    if let LogicalPlan::Projection(p) = cur {
        upper.projection = Some(p);
        cur = &p.input;
    }
    if let LogicalPlan::Filter(f) = cur {
        upper.having = Some(f);
        cur = &f.input;
    }
    let LogicalPlan::Aggregate(agg) = cur else {
        if let (LogicalPlan::TableScan(scan), Some(_), None) = (cur, upper.sort, upper.having) {
            return plan_sorted_scan(upper, scan);
        }
        return Ok(Outcome::NotGa4);
    };
    match direct_scan(agg)? {
        Some(found) => plan_aggregate(upper, agg, found),
        None if std::ptr::eq(cur, node) => {
            check_split_distinct(agg)?;
            check_indirect(agg)?;
            Ok(Outcome::NotGa4)
        }
        None => Ok(Outcome::NotGa4),
    }
}

/// An aggregate's input traced down to a GA4 table scan: its group and aggregate expressions
/// and predicates rewritten over the table's own columns.
struct Direct<'a> {
    scan: &'a TableScan,
    table: Arc<dyn datafusion::catalog::TableProvider>,
    groups: Vec<Expr>,
    aggregates: Vec<Expr>,
    predicates: Vec<Expr>,
}

fn ga4_table(scan: &TableScan) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider.is::<Ga4Table>().then_some(provider)
}

/// Replaces columns of `p`'s output with the expressions that define them.
fn through_projection(e: Expr, p: &Projection) -> Result<Expr> {
    e.transform_up(|x| match x {
        Expr::Column(c) => match p.schema.maybe_index_of_column(&c) {
            Some(i) => Ok(Transformed::yes(p.expr[i].clone().unalias_nested().data)),
            None => Ok(Transformed::no(Expr::Column(c))),
        },
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Re-qualifies columns of `a`'s output (`t.u`) as the columns of its input they are
/// (`u` of the projection below), by position.
fn through_alias(e: Expr, a: &SubqueryAlias) -> Result<Expr> {
    e.transform_up(|x| match x {
        Expr::Column(c) => match a.schema.maybe_index_of_column(&c) {
            Some(i) => {
                let (qualifier, field) = a.input.schema().qualified_field(i);
                Ok(Transformed::yes(Expr::Column(Column::new(
                    qualifier.cloned(),
                    field.name(),
                ))))
            }
            None => Ok(Transformed::no(Expr::Column(c))),
        },
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn direct_scan(agg: &Aggregate) -> Result<Option<Direct<'_>>> {
    let n_groups = agg.group_expr.len();
    let mut targets: Vec<Expr> = agg
        .group_expr
        .iter()
        .chain(&agg.aggr_expr)
        .map(|e| e.clone().unalias_nested().data)
        .collect();
    let mut predicates: Vec<Expr> = Vec::new();
    let mut below = agg.input.as_ref();
    let scan = loop {
        match below {
            LogicalPlan::Filter(f) => {
                predicates.push(f.predicate.clone());
                below = &f.input;
            }
            LogicalPlan::Projection(p) => {
                targets = targets
                    .into_iter()
                    .map(|e| through_projection(e, p))
                    .collect::<Result<_>>()?;
                predicates = predicates
                    .into_iter()
                    .map(|e| through_projection(e, p))
                    .collect::<Result<_>>()?;
                below = &p.input;
            }
            LogicalPlan::SubqueryAlias(a) => {
                targets = targets
                    .into_iter()
                    .map(|e| through_alias(e, a))
                    .collect::<Result<_>>()?;
                predicates = predicates
                    .into_iter()
                    .map(|e| through_alias(e, a))
                    .collect::<Result<_>>()?;
                below = &a.input;
            }
            LogicalPlan::TableScan(s) => break s,
            _ => return Ok(None),
        }
    };
    let Some(table) = ga4_table(scan) else {
        return Ok(None);
    };
    predicates.extend(scan.filters.iter().cloned());
    let aggregates = targets.split_off(n_groups);
    Ok(Some(Direct {
        scan,
        table,
        groups: targets,
        aggregates,
        predicates,
    }))
}

/// The GA4 column an expression is, if it is a bare column.
fn column_of<'t>(table: &'t Ga4Table, e: &Expr) -> Option<&'t Ga4Column> {
    match e {
        Expr::Column(c) => table.column(&c.name),
        _ => None,
    }
}

fn metric_columns<'t>(table: &'t Ga4Table, e: &Expr) -> Vec<&'t Ga4Column> {
    let mut out: Vec<&Ga4Column> = Vec::new();
    for c in e.column_refs() {
        if let Some(col) = table.column(&c.name)
            && col.is_metric()
            && !out.contains(&col)
        {
            out.push(col);
        }
    }
    out
}

/// An aggregate call GA4 computes itself for a group: SUM/MIN/MAX/AVG of a metric. With one
/// report row per group, each is the metric's value for the group as GA4 defines it.
fn pushable_aggregate<'t>(table: &'t Ga4Table, e: &Expr) -> Option<&'t Ga4Column> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return None;
    };
    if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
        return None;
    }
    if !matches!(func.name(), "sum" | "min" | "max" | "avg") {
        return None;
    }
    let [arg] = params.args.as_slice() else {
        return None;
    };
    column_of(table, arg).filter(|c| c.is_metric())
}

fn plan_aggregate(upper: Upper<'_>, agg: &Aggregate, direct: Direct<'_>) -> Result<Outcome> {
    let table = direct
        .table
        .downcast_ref::<Ga4Table>()
        .ok_or_else(|| DataFusionError::Internal("GA4 table vanished".into()))?;
    let mut reasons: Vec<String> = Vec::new();

    let mut group_columns: Vec<&Ga4Column> = Vec::new();
    // GROUP BY expressions computed from a calendar-period dimension: (index, field).
    let mut periods: Vec<(usize, Ga4Column)> = Vec::new();
    for (i, g) in direct.groups.iter().enumerate() {
        if column_of(table, g).is_none()
            && let Some(field) = period(table, g)
        {
            periods.push((i, field));
            continue;
        }
        // A dimension cast to a date or timestamp (a dashboard's day bucket is
        // `CAST(date AS DATE)`) groups exactly as the dimension does.
        match column_of(table, g)
            .or_else(|| column_of(table, strip_temporal_casts(g)).filter(|c| !c.is_metric()))
        {
            Some(c) if c.is_metric() => {
                return Err(plan_err(format!(
                    "cannot GROUP BY GA4 metric {} ({}): a metric is a value computed for a \
                     group of dimension values, not a dimension; aggregate it instead \
                     (SUM({}))",
                    c.name, c.api_name, c.name
                )));
            }
            Some(c) => group_columns.push(c),
            None if matches!(g, Expr::GroupingSet(_)) => {
                reasons.push("GROUPING SETS / ROLLUP / CUBE have no GA4 equivalent".into())
            }
            None => reasons.push(format!("GROUP BY {g} is not a GA4 dimension column")),
        }
    }

    let mut translation = Translation::default();
    let resolve = |c: &Column| table.column(&c.name).cloned();
    for p in &direct.predicates {
        for conjunct in split_conjunction(p) {
            if let Some(m) = metric_columns(table, conjunct).first() {
                return Err(plan_err(format!(
                    "WHERE {conjunct} filters on GA4 metric {} ({}) before aggregation, but GA4 \
                     metrics exist only per group; filter groups with HAVING instead",
                    m.name, m.api_name
                )));
            }
            match predicate_with(&resolve, conjunct, false) {
                Some(t) => translation.and(t),
                None => reasons.push(format!("WHERE {conjunct} has no GA4 filter equivalent")),
            }
        }
    }

    let mut metrics: Vec<&Ga4Column> = Vec::new();
    for a in &direct.aggregates {
        match pushable_aggregate(table, a) {
            Some(m) => metrics.push(m),
            None => reasons.push(format!("{a} is not SUM/MIN/MAX/AVG of a GA4 metric")),
        }
    }

    if !reasons.is_empty() {
        for (i, _) in &periods {
            reasons.push(format!("GROUP BY {} needs finer rows", direct.groups[*i]));
        }
        check_reaggregation(
            table,
            direct.scan,
            &group_columns,
            &direct.aggregates,
            &reasons,
        )?;
        return Ok(Outcome::Keep);
    }
    // Every group key as a report field, in GROUP BY order.
    let mut group_fields: Vec<Ga4Column> = group_columns.iter().map(|c| (*c).clone()).collect();
    for (i, field) in &periods {
        group_fields.insert(*i, field.clone());
    }

    // Exact: one report row per group.
    let mut fields: Vec<Ga4Column> = Vec::new();
    let mut index_of = |c: &Ga4Column| match fields.iter().position(|f| f.name == c.name) {
        Some(i) => i,
        None => {
            fields.push(c.clone());
            fields.len() - 1
        }
    };
    let out_map: Vec<usize> = group_fields
        .iter()
        .chain(metrics.iter().copied())
        .map(&mut index_of)
        .collect();
    let out_field = |c: &Column| -> Option<Ga4Column> {
        let i = agg.schema.maybe_index_of_column(c)?;
        Some(fields[out_map[i]].clone())
    };

    let mut residual_having: Vec<Expr> = Vec::new();
    let mut having_pushed = false;
    if let Some(h) = upper.having {
        for conjunct in split_conjunction(&h.predicate) {
            match predicate_with(&out_field, conjunct, true) {
                Some(t) => {
                    translation.and(t);
                    having_pushed = true;
                }
                None => residual_having.push(conjunct.clone()),
            }
        }
    }

    let mut request = translation.into_request(
        fields.iter().filter(|f| !f.is_metric()),
        fields.iter().filter(|f| f.is_metric()),
    );

    let mut sort_pushed = true;
    if let Some(sort) = upper.sort {
        let mut order_bys = Vec::new();
        for s in &sort.expr {
            let e = match upper.projection {
                Some(p) => through_projection(s.expr.clone(), p)?,
                None => s.expr.clone(),
            };
            let Some(f) = (match &e {
                Expr::Column(c) => out_field(c),
                _ => None,
            }) else {
                sort_pushed = false;
                break;
            };
            order_bys.push(order_by(&f, !s.asc));
        }
        if sort_pushed {
            request.order_bys = order_bys;
        }
    }
    let fetch = fetch(&upper)?;
    if let Some(n) = fetch
        && sort_pushed
        && residual_having.is_empty()
    {
        request.limit = Some(n.max(1) as i64);
    }

    let report = ReportTable {
        property: table.property.clone(),
        client: Arc::clone(&table.client),
        request,
        fields: fields.clone(),
        // SQL's one row of an aggregate without GROUP BY, unless a pushed HAVING removed it.
        scalar: agg.group_expr.is_empty() && !having_pushed,
        empty: translation.is_empty_range(),
        warnings: Arc::clone(&table.warnings),
    };
    tracing::debug!(request = ?report.request, "GA4 aggregate pushed down");
    let scan_name = direct.scan.table_name.clone();
    let scan = LogicalPlan::TableScan(
        TableScanBuilder::new(scan_name.clone(), provider_as_source(Arc::new(report))).build()?,
    );
    let scan_schema = Arc::clone(scan.schema());
    let renames = (0..agg.schema.fields().len())
        .map(|i| {
            let (qualifier, field) = agg.schema.qualified_field(i);
            let f = &fields[out_map[i]];
            let column = Expr::Column(Column::new(Some(scan_name.clone()), f.name.clone()));
            let mut e = match periods.iter().find(|(g, _)| *g == i) {
                // The GROUP BY expression itself, evaluated on the period's first day.
                Some(_) => on_period_start(table, direct.groups[i].clone(), &column)?,
                None => column,
            };
            if &e.get_type(&scan_schema)? != field.data_type() {
                e = Expr::Cast(Cast::new(Box::new(e), field.data_type().clone()));
            }
            Ok(e.alias_qualified(qualifier.cloned(), field.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut plan = LogicalPlan::Projection(Projection::try_new(renames, Arc::new(scan))?);
    if let Some(predicate) = conjunction(residual_having) {
        plan = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(plan))?);
    }
    let plan = rebuild_upper(&upper, plan)?;
    Ok(Outcome::Replace(plan))
}

/// `[Limit] Sort [Projection] TableScan(GA4)`: a plain scan whose order (and limit) GA4 can
/// apply, so a "top N rows" query fetches N rows, not the whole report.
fn plan_sorted_scan(upper: Upper<'_>, scan: &TableScan) -> Result<Outcome> {
    let Some(provider) = ga4_table(scan) else {
        return Ok(Outcome::NotGa4);
    };
    let Some(table) = provider.downcast_ref::<Ga4Table>() else {
        return Ok(Outcome::NotGa4);
    };
    let Some(sort) = upper.sort else {
        return Ok(Outcome::NotGa4);
    };
    let mut report = table.plain_report(scan.projection.as_ref(), &scan.filters)?;
    let mut order_bys = Vec::new();
    for s in &sort.expr {
        let e = match upper.projection {
            Some(p) => through_projection(s.expr.clone(), p)?,
            None => s.expr.clone(),
        };
        let Expr::Column(c) = &e else {
            return Ok(Outcome::NotGa4);
        };
        let Some(f) = report.fields.iter().find(|f| f.name == c.name) else {
            return Ok(Outcome::NotGa4);
        };
        order_bys.push(order_by(f, !s.asc));
    }
    report.request.order_bys = order_bys;
    report.request.limit = fetch(&upper)?.map(|n| n.max(1) as i64);
    let new_scan = LogicalPlan::TableScan(
        TableScanBuilder::new(
            scan.table_name.clone(),
            provider_as_source(Arc::new(report)),
        )
        .build()?,
    );
    Ok(Outcome::Replace(rebuild_upper(&upper, new_scan)?))
}

fn order_by(f: &Ga4Column, desc: bool) -> OrderBy {
    let by = if f.is_metric() {
        OrderByField::Metric(MetricOrderBy {
            metric_name: f.api_name.clone(),
        })
    } else {
        OrderByField::Dimension(DimensionOrderBy {
            dimension_name: f.api_name.clone(),
            order_type: Some(OrderType::Alphanumeric),
        })
    };
    OrderBy { desc, by }
}

/// How many rows the layers above need, if they say.
fn fetch(upper: &Upper<'_>) -> Result<Option<usize>> {
    let mut fetch = upper.sort.and_then(|s| s.fetch);
    if let Some(l) = upper.limit
        && let (SkipType::Literal(skip), FetchType::Literal(Some(n))) =
            (l.get_skip_type()?, l.get_fetch_type()?)
    {
        fetch = Some(fetch.map_or(skip + n, |f| f.min(skip + n)));
    }
    Ok(fetch)
}

/// The projection, sort and limit above, over a new input.
fn rebuild_upper(upper: &Upper<'_>, mut plan: LogicalPlan) -> Result<LogicalPlan> {
    if let Some(p) = upper.projection {
        plan = LogicalPlan::Projection(Projection::try_new(p.expr.clone(), Arc::new(plan))?);
    }
    if let Some(s) = upper.sort {
        plan = LogicalPlan::Sort(Sort {
            expr: s.expr.clone(),
            input: Arc::new(plan),
            fetch: s.fetch,
        });
    }
    if let Some(l) = upper.limit {
        plan = LogicalPlan::Limit(Limit {
            skip: l.skip.clone(),
            fetch: l.fetch.clone(),
            input: Arc::new(plan),
        });
    }
    Ok(plan)
}

/// A GROUP BY expression GA4 answers with a calendar-period dimension:
/// `date_trunc('day' | 'week' | 'month' | 'year', date)` (also over `CAST(date AS TIMESTAMP)`,
/// and cast afterwards) → `date`, `isoYearIsoWeek`, `yearMonth`, `year`.
fn period(table: &Ga4Table, g: &Expr) -> Option<Ga4Column> {
    let Expr::ScalarFunction(f) = strip_temporal_casts(g) else {
        return None;
    };
    if f.func.name() != "date_trunc" {
        return None;
    }
    let [unit, arg] = f.args.as_slice() else {
        return None;
    };
    let unit = match unit {
        Expr::Literal(ScalarValue::Utf8(Some(u)) | ScalarValue::Utf8View(Some(u)), _) => {
            u.to_lowercase()
        }
        _ => return None,
    };
    let date = column_of(table, strip_temporal_casts(arg))?;
    if date.api_name != DATE_DIMENSION || date.is_metric() {
        return None;
    }
    let api_name = match unit.as_str() {
        "day" => return Some(date.clone()),
        "week" => "isoYearIsoWeek",
        "month" => "yearMonth",
        "year" => "year",
        _ => return None,
    };
    let base = table.columns.iter().find(|c| c.api_name == api_name)?;
    Some(Ga4Column {
        name: format!("{}_start", base.name),
        api_name: api_name.to_string(),
        kind: ColumnKind::PeriodStart,
    })
}

/// `e` without casts to a date or timestamp.
fn strip_temporal_casts(mut e: &Expr) -> &Expr {
    while let Expr::Cast(c) = e {
        if !matches!(
            c.field.data_type(),
            DataType::Date32 | DataType::Timestamp(_, None)
        ) {
            break;
        }
        e = &c.expr;
    }
    e
}

/// `g` with the `date` column replaced by the period's first day.
fn on_period_start(table: &Ga4Table, g: Expr, start: &Expr) -> Result<Expr> {
    g.transform_up(|e| match &e {
        Expr::Column(c)
            if table
                .column(&c.name)
                .is_some_and(|col| col.api_name == DATE_DIMENSION) =>
        {
            Ok(Transformed::yes(start.clone()))
        }
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// The aggregate cannot be one report: GA4 rows at the grain of the dimensions the query reads
/// will be aggregated by DataFusion. Allowed only where that is exact.
fn check_reaggregation(
    table: &Ga4Table,
    scan: &TableScan,
    group_columns: &[&Ga4Column],
    aggregates: &[Expr],
    reasons: &[String],
) -> Result<()> {
    let grain: Vec<&Ga4Column> = scan
        .projected_schema
        .fields()
        .iter()
        .filter_map(|f| table.column(f.name()))
        .filter(|c| !c.is_metric())
        .collect();
    let rolled: Vec<&Ga4Column> = grain
        .iter()
        .copied()
        .filter(|c| !group_columns.iter().any(|g| g.api_name == c.api_name))
        .collect();
    let rolled_api: Vec<&str> = rolled.iter().map(|c| c.api_name.as_str()).collect();
    let rolled_sql = if rolled.is_empty() {
        "no further dimension".to_string()
    } else {
        rolled
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let why = reasons.join("; ");
    for a in aggregates {
        let metrics = metric_columns(table, a);
        if metrics.is_empty() {
            // Over dimensions only: distinct counts, MIN and MAX do not depend on the grain.
            let ok = matches!(a, Expr::AggregateFunction(AggregateFunction { func, params })
                if params.distinct || matches!(func.name(), "min" | "max"));
            if !ok {
                return Err(plan_err(format!(
                    "cannot compute {a} over GA4 table {}: GA4 has no rows of its own, only \
                     report rows whose number depends on the dimensions asked for, so a row \
                     count has no meaning; count dimension values with COUNT(DISTINCT \
                     <dimension>) or use a metric such as SUM(sessions) or SUM(event_count)",
                    table.property
                )));
            }
            continue;
        }
        let summed = match a {
            Expr::AggregateFunction(AggregateFunction { func, params })
                if func.name() == "sum"
                    && !params.distinct
                    && params.filter.is_none()
                    && params.args.len() == 1 =>
            {
                column_of(table, &params.args[0]).filter(|c| c.is_metric())
            }
            _ => None,
        };
        let Some(m) = summed else {
            return Err(plan_err(format!(
                "cannot compute {a} over GA4 table {}: the query cannot be sent to GA4 as one \
                 report ({why}), and DataFusion would then have to aggregate GA4 rows by {} \
                 itself, which is only exact for SUM of an additive metric",
                table.property, rolled_sql
            )));
        };
        if !summable_across(&m.api_name, &rolled_api) {
            let nature = match additivity(&m.api_name) {
                Additivity::SessionScoped => {
                    "counts a session once per row it appears on, so summing over page- or \
                     event-level rows counts sessions many times"
                }
                _ => {
                    "is a distinct count, ratio or average that GA4 computes per group; summing \
                     it over finer rows double-counts (a user active on two rows counts twice)"
                }
            };
            return Err(plan_err(format!(
                "refusing to re-aggregate non-additive GA4 metric {} ({}): the query cannot be \
                 sent to GA4 as one report ({why}), so GA4 rows by {} would be summed by \
                 DataFusion, and {} {nature}. Group by GA4 dimension columns and filter with \
                 conditions GA4 can evaluate (=, <>, IN, LIKE, ~, numeric comparisons, date \
                 ranges) so the whole aggregate is pushed to GA4",
                m.name, m.api_name, rolled_sql, m.api_name
            )));
        }
    }
    Ok(())
}

/// DataFusion's `single_distinct_to_groupby` rewrites `SELECT g, SUM(m), COUNT(DISTINCT d)
/// … GROUP BY g` into an inner aggregate by (g, d) and an outer one that sums the inner sums.
/// Over a GA4 table that outer sum re-aggregates `m` across `d`: allowed only for metrics
/// additive across `d`.
fn check_split_distinct(outer: &Aggregate) -> Result<()> {
    let mut below = outer.input.as_ref();
    let inner = loop {
        match below {
            LogicalPlan::Projection(p) => below = &p.input,
            LogicalPlan::Filter(f) => below = &f.input,
            LogicalPlan::SubqueryAlias(a) => below = &a.input,
            LogicalPlan::Aggregate(a) => break a,
            _ => return Ok(()),
        }
    };
    // The rewrite's name for the DISTINCT argument.
    let Some(key) = inner
        .group_expr
        .iter()
        .position(|g| matches!(g, Expr::Alias(a) if a.name == "alias1"))
    else {
        return Ok(());
    };
    let Some(direct) = direct_scan(inner)? else {
        return Ok(());
    };
    let Some(table) = direct.table.downcast_ref::<Ga4Table>() else {
        return Ok(());
    };
    let kept: Vec<String> = direct
        .groups
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != key)
        .flat_map(|(_, g)| g.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    let rolled: Vec<&Ga4Column> = direct.groups[key]
        .column_refs()
        .into_iter()
        .filter_map(|c| table.column(&c.name))
        .filter(|c| !c.is_metric() && !kept.contains(&c.name))
        .collect();
    let rolled_api: Vec<&str> = rolled.iter().map(|c| c.api_name.as_str()).collect();
    for a in &direct.aggregates {
        if metric_columns(table, a).is_empty() {
            continue;
        }
        let summed = match a {
            Expr::AggregateFunction(AggregateFunction { func, params }) if func.name() == "sum" => {
                params.args.first().and_then(|arg| column_of(table, arg))
            }
            _ => None,
        };
        if summed.is_none_or(|m| !summable_across(&m.api_name, &rolled_api)) {
            return Err(plan_err(format!(
                "refusing to re-aggregate GA4 metric in {a}: together with \
                 COUNT(DISTINCT {}) it needs GA4 rows split by {} that DataFusion would \
                 then add up, which is only exact for SUM of a metric additive across them; \
                 compute the distinct count in a separate query",
                direct.groups[key].clone().unalias(),
                rolled
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// An aggregate over GA4 rows that arrive through joins, unions, windows…: summing additive
/// metrics is the user's explicit choice, re-aggregating anything else is refused.
fn check_indirect(agg: &Aggregate) -> Result<()> {
    let mut problem: Option<String> = None;
    agg.input.apply(|n| {
        match n {
            LogicalPlan::Aggregate(_) => return Ok(TreeNodeRecursion::Jump),
            LogicalPlan::TableScan(s) => {
                if let Some(provider) = ga4_table(s)
                    && let Some(table) = provider.downcast_ref::<Ga4Table>()
                {
                    for f in s.projected_schema.fields() {
                        if let Some(c) = table.column(f.name())
                            && c.is_metric()
                            && additivity(&c.api_name) != Additivity::Always
                        {
                            problem = Some(format!(
                                "refusing to compute {} over non-additive GA4 metric {} ({}) \
                                 of {} after a join, union or window: DataFusion would \
                                 re-aggregate GA4 rows. Aggregate the GA4 table on its own in \
                                 a subquery (SELECT <dimensions>, SUM({}) FROM … GROUP BY \
                                 <dimensions>) and join or combine its result",
                                agg.aggr_expr
                                    .iter()
                                    .map(|a| a.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                c.name,
                                c.api_name,
                                table.property,
                                c.name
                            ));
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match problem {
        Some(p) => Err(plan_err(p)),
        None => Ok(()),
    }
}
