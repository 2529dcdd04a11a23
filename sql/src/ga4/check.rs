//! The last word before a plan runs: no node may combine two rows' values of a non-additive
//! GA4 metric.
//!
//! [`super::pushdown`] turns the aggregates it recognises into reports GA4 computes; what is left
//! is checked here, over the final optimized plan, by [`Ga4Planner`] before the physical plan is
//! built. Every column of every node is followed from the GA4 scan it comes from: a
//! non-additive metric (users, rates, averages, ratios, any metric [`additivity`] does not call
//! additive) is a *per-row value* at the grain of its report's dimensions. Projections, aliases,
//! subquery aliases (by position, so re-qualification cannot hide it), filters, sorts, limits,
//! distinct, joins and unions carry it along; an expression over it is one too. Then:
//!
//! - an aggregate over it is refused, except `SUM` of a metric additive across the dimensions
//!   the aggregate rolls up ([`summable_across`]: `sessions` across session-scoped dimensions)
//!   at a grain still known (not after a join, which may repeat rows, or a union), and
//!   `merge_value`, which takes a group's one value and fails on a second;
//! - a window function that combines rows' values of it (`SUM`, `AVG`, `COUNT`, `MIN`, `MAX`…
//!   `OVER`) is refused; ranking by it (`rank`, `row_number`) and moving it between rows
//!   (`lag`, `lead`, `first_value`) combine nothing and are allowed.
//!
//! A refusal is a [`Ga4Refusal`]: the user's request, naming the metric and the operation.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DataFusionError, JoinType, Result};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, WindowFunctionDefinition};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

use super::Ga4Refusal;
use super::additivity::{Additivity, additivity, summable_across};
use super::table::{Ga4Column, Ga4Table, ReportTable};

/// The query planner GA4 sessions use: [`check`] on the optimized plan, then DataFusion's own
/// physical planner. Installed by [`super::register`].
#[derive(Debug, Default)]
pub struct Ga4Planner;

#[async_trait]
impl QueryPlanner for Ga4Planner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        check(plan)?;
        DefaultPhysicalPlanner::default()
            .create_physical_plan(plan, state)
            .await
    }
}

/// A non-additive GA4 metric's value on a row.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    /// The SQL column name (`total_users`).
    metric: String,
    /// The API name (`totalUsers`).
    api_name: String,
    /// The API names of the dimensions one row stands for; `None` once rows may repeat or mix
    /// (after a join or a union), or for an expression over the metric.
    grain: Option<Vec<String>>,
}

/// What one column of a node carries.
#[derive(Debug, Clone, PartialEq)]
enum Carries {
    /// A GA4 dimension (API name).
    Dimension(String),
    /// A non-additive GA4 metric's per-row value.
    Value(Value),
    /// Anything else.
    Other,
}

fn refuse(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(Ga4Refusal(message)))
}

/// Refuses `plan` if any node combines two rows' values of a non-additive GA4 metric.
pub fn check(plan: &LogicalPlan) -> Result<()> {
    lineage(plan).map(|_| ())
}

/// What each output column of `plan` carries, checking every node on the way.
fn lineage(plan: &LogicalPlan) -> Result<Vec<Carries>> {
    // Subqueries left in expressions (scalar subqueries, EXISTS) are plans of their own.
    plan.apply_subqueries(|sub| {
        check(sub)?;
        Ok(TreeNodeRecursion::Continue)
    })?;
    let width = plan.schema().fields().len();
    let out = match plan {
        LogicalPlan::TableScan(scan) => scan_lineage(scan)?,
        LogicalPlan::Projection(p) => {
            let input = lineage(&p.input)?;
            p.expr
                .iter()
                .map(|e| expr_lineage(e, p.input.schema(), &input))
                .collect()
        }
        LogicalPlan::SubqueryAlias(a) => lineage(&a.input)?,
        LogicalPlan::Filter(f) => lineage(&f.input)?,
        LogicalPlan::Sort(s) => lineage(&s.input)?,
        LogicalPlan::Limit(l) => lineage(&l.input)?,
        LogicalPlan::Repartition(r) => lineage(&r.input)?,
        LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => lineage(input)?,
        LogicalPlan::Join(j) => {
            let left = lineage(&j.left)?;
            let right = lineage(&j.right)?;
            // Semi and anti joins keep one side's columns; a mark join adds a boolean.
            let mut out: Vec<Carries> = match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left,
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right,
                _ => left.into_iter().chain(right).collect(),
            };
            out.resize(width, Carries::Other);
            // A row of either side may appear many times.
            out.into_iter().map(ungrained).collect()
        }
        LogicalPlan::Union(u) => {
            let mut out = vec![Carries::Other; width];
            for input in &u.inputs {
                for (i, c) in lineage(input)?.into_iter().enumerate() {
                    if i < width && matches!(c, Carries::Value(_)) && out[i] == Carries::Other {
                        out[i] = ungrained(c);
                    }
                }
            }
            out
        }
        LogicalPlan::Aggregate(agg) => {
            let input = lineage(&agg.input)?;
            let schema = agg.input.schema();
            let groups: Vec<Carries> = agg
                .group_expr
                .iter()
                .map(|g| expr_lineage(g, schema, &input))
                .collect();
            let kept: Vec<&str> = groups
                .iter()
                .filter_map(|c| match c {
                    Carries::Dimension(d) => Some(d.as_str()),
                    _ => None,
                })
                .collect();
            let mut aggregates = Vec::with_capacity(agg.aggr_expr.len());
            for a in &agg.aggr_expr {
                aggregates.push(aggregate_lineage(a, schema, &input, &kept)?);
            }
            let mut out = vec![Carries::Other; width];
            let plain_groups = !agg
                .group_expr
                .iter()
                .any(|g| matches!(g, Expr::GroupingSet(_)));
            if plain_groups {
                for (i, c) in groups.into_iter().enumerate().take(width) {
                    out[i] = c;
                }
            }
            let first = width.saturating_sub(aggregates.len());
            for (i, c) in aggregates.into_iter().enumerate() {
                if let Some(slot) = out.get_mut(first + i) {
                    *slot = c;
                }
            }
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = lineage(&w.input)?;
            let schema = w.input.schema();
            for e in &w.window_expr {
                out.push(window_lineage(e, schema, &out)?);
            }
            out
        }
        other => {
            // Any other node: its inputs are checked; what it outputs is not followed.
            for input in other.inputs() {
                lineage(input)?;
            }
            vec![Carries::Other; width]
        }
    };
    // A node whose width we misread carries nothing rather than something wrong.
    if out.len() != width {
        return Ok(vec![Carries::Other; width]);
    }
    Ok(out)
}

fn ungrained(c: Carries) -> Carries {
    match c {
        Carries::Value(v) => Carries::Value(Value { grain: None, ..v }),
        other => other,
    }
}

fn carried(c: &Ga4Column, dimensions: &[String]) -> Carries {
    if !c.is_metric() {
        return Carries::Dimension(c.api_name.clone());
    }
    if additivity(&c.api_name) == Additivity::Always {
        return Carries::Other;
    }
    Carries::Value(Value {
        metric: c.name.clone(),
        api_name: c.api_name.clone(),
        grain: Some(dimensions.to_vec()),
    })
}

/// A GA4 table (a report at the grain of the dimensions read) or a pushed-down report (at the
/// grain of its dimensions).
fn scan_lineage(scan: &datafusion::logical_expr::TableScan) -> Result<Vec<Carries>> {
    let fields = scan.projected_schema.fields();
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(vec![Carries::Other; fields.len()]);
    };
    let columns: Vec<Option<Ga4Column>> = if let Some(t) = provider.downcast_ref::<Ga4Table>() {
        fields.iter().map(|f| t.column(f.name()).cloned()).collect()
    } else if let Some(r) = provider.downcast_ref::<ReportTable>() {
        fields
            .iter()
            .map(|f| r.fields.iter().find(|c| &c.name == f.name()).cloned())
            .collect()
    } else {
        return Ok(vec![Carries::Other; fields.len()]);
    };
    let dimensions: Vec<String> = columns
        .iter()
        .flatten()
        .filter(|c| !c.is_metric())
        .map(|c| c.api_name.clone())
        .collect();
    let dimensions = match provider.downcast_ref::<ReportTable>() {
        // The report's grain is its request's dimensions, whichever are projected.
        Some(r) => r
            .request
            .dimensions
            .iter()
            .map(|d| d.name.clone())
            .collect(),
        None => dimensions,
    };
    Ok(columns
        .iter()
        .map(|c| {
            c.as_ref()
                .map_or(Carries::Other, |c| carried(c, &dimensions))
        })
        .collect())
}

/// The non-additive values `e` reads, in order.
fn values_in(e: &Expr, schema: &DFSchema, input: &[Carries]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for c in e.column_refs() {
        if let Some(i) = schema.maybe_index_of_column(c)
            && let Some(Carries::Value(v)) = input.get(i)
            && !out.contains(v)
        {
            out.push(v.clone());
        }
    }
    out
}

/// What a projected expression carries: a bare column (or an alias of one) what the column
/// does; an expression over a non-additive value, that value without a known grain.
fn expr_lineage(e: &Expr, schema: &DFSchema, input: &[Carries]) -> Carries {
    let mut inner = e;
    while let Expr::Alias(a) = inner {
        inner = &a.expr;
    }
    if let Expr::Column(c) = inner {
        return schema
            .maybe_index_of_column(c)
            .and_then(|i| input.get(i).cloned())
            .unwrap_or(Carries::Other);
    }
    match values_in(inner, schema, input).into_iter().next() {
        Some(v) => Carries::Value(Value { grain: None, ..v }),
        None => Carries::Other,
    }
}

fn describe(v: &Value) -> String {
    format!("non-additive GA4 metric {} ({})", v.metric, v.api_name)
}

/// An aggregate call: refused over a non-additive value unless it is a SUM that is exact.
fn aggregate_lineage(
    a: &Expr,
    schema: &DFSchema,
    input: &[Carries],
    kept: &[&str],
) -> Result<Carries> {
    let mut inner = a;
    while let Expr::Alias(al) = inner {
        inner = &al.expr;
    }
    let values = values_in(inner, schema, input);
    let Some(v) = values.first() else {
        return Ok(Carries::Other);
    };
    if let Some(one) = single_row_aggregate(inner, schema, input, kept) {
        return Ok(one);
    }
    // `merge_value` takes a group's one value and fails on a second: it combines nothing.
    if let Expr::AggregateFunction(AggregateFunction { func, params }) = inner
        && func.name() == "merge_value"
        && let [Expr::Column(c)] = params.args.as_slice()
        && let Some(i) = schema.maybe_index_of_column(c)
        && let Some(Carries::Value(arg)) = input.get(i)
    {
        return Ok(Carries::Value(arg.clone()));
    }
    if let Expr::AggregateFunction(AggregateFunction { func, params }) = inner
        && func.name() == "sum"
        && !params.distinct
        && params.filter.is_none()
        && let [Expr::Column(c)] = params.args.as_slice()
        && let Some(i) = schema.maybe_index_of_column(c)
        && let Some(Carries::Value(arg)) = input.get(i)
        && let Some(grain) = &arg.grain
    {
        let rolled: Vec<&str> = grain
            .iter()
            .map(String::as_str)
            .filter(|d| !kept.contains(d))
            .collect();
        if summable_across(&arg.api_name, &rolled) {
            let grain = grain
                .iter()
                .filter(|d| kept.contains(&d.as_str()))
                .cloned()
                .collect();
            return Ok(Carries::Value(Value {
                grain: Some(grain),
                ..arg.clone()
            }));
        }
    }
    Err(refuse(format!(
        "refusing to compute {inner} over {}: each row holds the metric as GA4 computed it for \
         that row's group, and combining rows (a sum of daily users counts a user active on two \
         days twice; an average of rates is not the rate) gives a wrong number. Ask for the \
         metric at the grain you need (GROUP BY the GA4 dimensions directly over the GA4 \
         table, e.g. SELECT SUM({}) FROM ga4.<table> WHERE … GROUP BY …) so GA4 computes it",
        describe(v),
        v.metric
    )))
}

/// An aggregate of a value whose groups keep every dimension of its grain: each group is one
/// report row (GA4 answers one row per combination of dimension values), so `SUM`, `MIN`,
/// `MAX` or `AVG` of it is the row's own value and combines nothing.
fn single_row_aggregate(
    e: &Expr,
    schema: &DFSchema,
    input: &[Carries],
    kept: &[&str],
) -> Option<Carries> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return None;
    };
    if !matches!(func.name(), "sum" | "min" | "max" | "avg") || params.filter.is_some() {
        return None;
    }
    let [Expr::Column(c)] = params.args.as_slice() else {
        return None;
    };
    let Carries::Value(v) = input.get(schema.maybe_index_of_column(c)?)? else {
        return None;
    };
    let grain = v.grain.as_ref()?;
    grain
        .iter()
        .all(|d| kept.contains(&d.as_str()))
        .then(|| Carries::Value(v.clone()))
}

/// A window function: refused if it combines rows' non-additive values.
fn window_lineage(e: &Expr, schema: &DFSchema, input: &[Carries]) -> Result<Carries> {
    let mut inner = e;
    while let Expr::Alias(al) = inner {
        inner = &al.expr;
    }
    let Expr::WindowFunction(w) = inner else {
        return Ok(Carries::Other);
    };
    let WindowFunction { fun, params } = w.as_ref();
    let mut args: Vec<Value> = Vec::new();
    for arg in &params.args {
        for v in values_in(arg, schema, input) {
            if !args.contains(&v) {
                args.push(v);
            }
        }
    }
    let Some(v) = args.first() else {
        // Ranking or numbering by a value combines nothing.
        return Ok(Carries::Other);
    };
    let moves_values = matches!(
        fun,
        WindowFunctionDefinition::WindowUDF(udf)
            if matches!(udf.name(), "lag" | "lead" | "first_value" | "last_value" | "nth_value")
    );
    if moves_values {
        return Ok(Carries::Value(Value {
            grain: None,
            ..v.clone()
        }));
    }
    Err(refuse(format!(
        "refusing to compute window function {inner} over {}: it combines several rows' values \
         of the metric, each computed by GA4 for its own row's group (a running or overall sum \
         of daily users counts a user active on two days twice; an average of rates is not the \
         rate). Ask GA4 for the metric at the grain you need with a GROUP BY over the GA4 table \
         instead; ranking (rank, row_number) and lag/lead of the metric are allowed",
        describe(v)
    )))
}
