//! Whole-subplan pushdown. `datafusion-federation`'s rule marks the largest subplans whose
//! tables all live in one Trino (for one tenant) as `Federated` nodes; [`TrinoPushdown`], right
//! after it, turns each into plain logical plan: the part Trino can answer with the same
//! meaning becomes a table scan of a [`PushedQuery`] (whose execution sends that subplan as SQL),
//! and anything above it that Trino cannot do (Tidemark's own functions, subqueries…) stays
//! in DataFusion. No query planner is installed, so other sources' rules compose with this.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue, Statistics};
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, ExprSchemable, Extension, LogicalPlan, LogicalPlanBuilder, Operator, TableScanBuilder,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::sql::unparser::Unparser;
use datafusion_federation::sql::{SQLExecutor, SQLTableSource, VirtualExecutionPlan};
use datafusion_federation::{FederatedPlanNode, get_table_source};
use futures::StreamExt;

use super::dialect::TrinoDialect;

/// The optimizer rule that lowers `Federated` Trino subplans into [`PushedQuery`] scans.
#[derive(Debug, Default)]
pub struct TrinoPushdown;

/// The name [`TrinoPushdown`] registers under.
pub const RULE_NAME: &str = "trino_pushdown";

impl OptimizerRule for TrinoPushdown {
    fn name(&self) -> &str {
        RULE_NAME
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| {
            let LogicalPlan::Extension(Extension { node: ext }) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(federated) = ext.as_any().downcast_ref::<FederatedPlanNode>() else {
                return Ok(Transformed::no(node));
            };
            let Some(executor) = trino_executor(federated.plan())? else {
                return Ok(Transformed::no(node));
            };
            Ok(Transformed::yes(split(
                federated.plan().clone(),
                &executor,
            )?))
        })
    }
}

/// The executor of the subplan's tables, if they are all Trino tables of one executor.
fn trino_executor(plan: &LogicalPlan) -> Result<Option<Arc<dyn SQLExecutor>>> {
    let mut found: Option<Arc<dyn SQLExecutor>> = None;
    let mut foreign = false;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let source = get_table_source(&scan.source)?;
            let sql_source = source
                .as_ref()
                .and_then(|s| (s.as_ref() as &dyn Any).downcast_ref::<SQLTableSource>());
            match sql_source {
                Some(s) if s.provider.executor.name() == "trino" => {
                    found = Some(Arc::clone(&s.provider.executor));
                }
                _ => {
                    foreign = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(if foreign { None } else { found })
}

/// The largest pushable subplans of `plan` become scans; what is above them stays.
fn split(plan: LogicalPlan, executor: &Arc<dyn SQLExecutor>) -> Result<LogicalPlan> {
    if pushable(&plan)? {
        return pushed_scan(plan, executor);
    }
    let inputs = plan
        .inputs()
        .into_iter()
        .map(|input| split(input.clone(), executor))
        .collect::<Result<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), inputs)
}

/// Whether Trino computes `plan` exactly as DataFusion would: only node kinds, functions,
/// operators and types whose meaning is the same in both, and SQL the dialect can write.
pub fn pushable(plan: &LogicalPlan) -> Result<bool> {
    let mut ok = true;
    plan.apply(|node| {
        let node_ok = match node {
            LogicalPlan::TableScan(_)
            | LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Window(_) => true,
            LogicalPlan::Aggregate(agg) => {
                agg.group_expr.iter().all(|e| {
                    // No GROUPING SETS / ROLLUP / CUBE: their null-marking differs in detail.
                    !matches!(e, Expr::GroupingSet(_))
                }) && agg
                    .aggr_expr
                    .iter()
                    .all(|e| aggregate_ok(e, agg.input.schema()))
            }
            LogicalPlan::Join(join) => {
                join.null_equality == datafusion::common::NullEquality::NullEqualsNothing
            }
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_)) => true,
            _ => false,
        };
        if !node_ok || !node.expressions().iter().all(expr_ok) {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if ok && Unparser::new(&TrinoDialect).plan_to_sql(plan).is_err() {
        ok = false;
    }
    Ok(ok)
}

/// Scalar functions with the same name and meaning in Trino (or renamed by the dialect).
const SCALAR_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "sqrt",
    "ln",
    "log10",
    "log2",
    "power",
    "pow",
    "exp",
    "sign",
    "lower",
    "upper",
    "length",
    "character_length",
    "char_length",
    "strpos",
    "instr",
    "substr",
    "replace",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "lpad",
    "rpad",
    "starts_with",
    "reverse",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "date_trunc",
    "date_part",
    "split_part",
];

/// Aggregates with the same result in Trino for the argument types checked below.
const AGGREGATES: &[&str] = &["count", "sum", "min", "max", "avg", "bool_and", "bool_or"];

/// Window functions with the same meaning in Trino.
const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "count",
    "sum",
    "min",
    "max",
];

fn aggregate_ok(e: &Expr, input: &datafusion::common::DFSchema) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(f) = e else {
        return true;
    };
    let name = f.func.name();
    if !AGGREGATES.contains(&name) || !f.params.order_by.is_empty() {
        return false;
    }
    // avg of a decimal rounds to the argument's scale in Trino but widens it in DataFusion.
    if name == "avg" {
        return f.params.args.iter().all(|a| {
            !matches!(
                a.get_type(input),
                Ok(DataType::Decimal128(..) | DataType::Decimal256(..))
            )
        });
    }
    true
}

fn expr_ok(e: &Expr) -> bool {
    let mut ok = true;
    let _ = e.apply(|e| {
        let this = match e {
            Expr::Column(_)
            | Expr::Alias(_)
            | Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::Negative(_)
            | Expr::Between(_)
            | Expr::Case(_)
            | Expr::InList(_) => true,
            Expr::Literal(v, _) => literal_ok(v),
            Expr::BinaryExpr(b) => matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
                    | Operator::StringConcat
            ),
            Expr::Like(like) => !like.case_insensitive,
            Expr::Cast(c) => cast_ok(c.field.data_type()),
            Expr::TryCast(c) => cast_ok(c.field.data_type()),
            Expr::ScalarFunction(f) if f.func.name() == "date_part" => matches!(
                f.args.first(),
                Some(Expr::Literal(ScalarValue::Utf8(Some(part)), _))
                    if super::dialect::DATE_PARTS.contains(&part.to_ascii_lowercase().as_str())
            ),
            Expr::ScalarFunction(f) => SCALAR_FUNCTIONS.contains(&f.func.name()),
            Expr::AggregateFunction(f) => {
                AGGREGATES.contains(&f.func.name()) && f.params.order_by.is_empty()
            }
            Expr::WindowFunction(w) => WINDOW_FUNCTIONS.contains(&w.fun.name()),
            _ => false,
        };
        if !this {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

fn literal_ok(v: &datafusion::common::ScalarValue) -> bool {
    use datafusion::common::ScalarValue as V;
    match v {
        V::Float32(Some(f)) => f.is_finite(),
        V::Float64(Some(f)) => f.is_finite(),
        V::Null
        | V::Boolean(_)
        | V::Int8(_)
        | V::Int16(_)
        | V::Int32(_)
        | V::Int64(_)
        | V::Float32(None)
        | V::Float64(None)
        | V::Decimal128(..)
        | V::Utf8(_)
        | V::Utf8View(_)
        | V::LargeUtf8(_)
        | V::Date32(_)
        | V::TimestampMillisecond(..)
        | V::TimestampMicrosecond(..)
        | V::TimestampNanosecond(..) => true,
        V::IntervalMonthDayNano(Some(i)) => {
            (i.days == 0 && i.nanoseconds == 0 && i.months >= 0)
                || (i.months == 0 && i.nanoseconds % 1_000_000 == 0)
        }
        _ => false,
    }
}

fn cast_ok(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Utf8
            | DataType::Utf8View
            | DataType::LargeUtf8
            | DataType::Date32
            | DataType::Timestamp(..)
    )
}

/// `plan` as `Projection(TableScan(PushedQuery))` with the same output schema (qualifiers,
/// names, types) as `plan`.
fn pushed_scan(plan: LogicalPlan, executor: &Arc<dyn SQLExecutor>) -> Result<LogicalPlan> {
    let out = Arc::clone(plan.schema());
    // The columns come back by position, so the SQL must list exactly the plan's columns in
    // order: only a projection says that (an aggregate, say, may be written aggregates first).
    let plan = if projected(&plan) {
        plan
    } else {
        LogicalPlanBuilder::from(plan)
            .project(out.columns().into_iter().map(Expr::Column))?
            .build()?
    };
    // Positional names (c0, c1…) between the scan and the rest of the plan: the subplan's own
    // names may repeat across qualifiers (`a.id`, `b.id`).
    let fields: Vec<Field> = out
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), f.is_nullable()))
        .collect();
    let provider = Arc::new(PushedQuery {
        plan,
        executor: Arc::clone(executor),
        schema: Arc::new(Schema::new(fields)),
    });
    let scan = LogicalPlan::TableScan(
        TableScanBuilder::new("trino_pushed", provider_as_source(provider)).build()?,
    );
    let exprs = out
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            Expr::Column(Column::new(Some("trino_pushed"), format!("c{i}")))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(scan).project(exprs)?.build()
}

/// Whether `plan` is a projection, under any sorts and limits (which keep its columns).
fn projected(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(_) => true,
        LogicalPlan::Sort(s) => projected(&s.input),
        LogicalPlan::Limit(l) => projected(&l.input),
        _ => false,
    }
}

/// A subplan that Trino answers: a table to DataFusion, one SQL query to Trino.
#[derive(Debug)]
pub struct PushedQuery {
    plan: LogicalPlan,
    executor: Arc<dyn SQLExecutor>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for PushedQuery {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let statistics = Statistics::new_unknown(self.plan.schema().as_arrow());
        let query = Arc::new(VirtualExecutionPlan::new(
            self.plan.clone(),
            Arc::clone(&self.executor),
            statistics,
        ));
        let exec: Arc<dyn ExecutionPlan> =
            Arc::new(Positional::new(query, Arc::clone(&self.schema)));
        match projection {
            Some(p)
                if p.len() != self.schema.fields().len()
                    || p.iter().enumerate().any(|(i, c)| i != *c) =>
            {
                let exprs = p
                    .iter()
                    .map(|&i| {
                        let name = self.schema.field(i).name().clone();
                        let col: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                            datafusion::physical_expr::expressions::Column::new(&name, i),
                        );
                        (col, name)
                    })
                    .collect::<Vec<_>>();
                Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
            }
            _ => Ok(exec),
        }
    }
}

/// Runs the pushed query and relabels its columns by position (`c0`, `c1`…). The query runs
/// as one unit: it is not a child the physical optimizer could rearrange.
#[derive(Debug)]
struct Positional {
    query: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl Positional {
    fn new(query: Arc<dyn ExecutionPlan>, schema: SchemaRef) -> Positional {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Positional {
            query,
            schema,
            properties,
        }
    }
}

impl DisplayAs for Positional {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "TrinoPushedQuery: ")?;
        self.query.fmt_as(t, f)
    }
}

impl ExecutionPlan for Positional {
    fn name(&self) -> &str {
        "TrinoPushedQuery"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.schema);
        let stream = self.query.execute(partition, context)?;
        let relabelled = stream.map(move |batch| {
            let batch = batch?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                batch.columns().to_vec(),
                &options,
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            relabelled,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::functions::expr_fn::date_part;
    use datafusion::functions_aggregate::expr_fn::{avg, count, sum};
    use datafusion::logical_expr::{cast, col, lit, table_scan};

    fn orders() -> LogicalPlanBuilder {
        let schema = Schema::new(vec![
            Field::new("channel", DataType::Utf8, true),
            Field::new("revenue", DataType::Decimal128(12, 2), true),
            Field::new("items", DataType::Int32, true),
            Field::new("order_date", DataType::Date32, true),
        ]);
        table_scan(Some("orders"), &schema, None).unwrap()
    }

    fn check(plan: LogicalPlanBuilder) -> bool {
        pushable(&plan.build().unwrap()).unwrap()
    }

    #[test]
    fn aggregates_filters_and_sorts_are_pushed() {
        let plan = orders()
            .filter(
                col("channel")
                    .eq(lit("google"))
                    .and(col("items").gt(lit(2))),
            )
            .unwrap()
            .aggregate(
                vec![col("channel")],
                vec![sum(col("revenue")), count(col("items")), avg(col("items"))],
            )
            .unwrap()
            .sort(vec![col("channel").sort(true, false)])
            .unwrap()
            .limit(0, Some(10))
            .unwrap();
        assert!(check(plan));
        let by_year = orders()
            .aggregate(
                vec![date_part(lit("year"), col("order_date"))],
                vec![count(lit(1))],
            )
            .unwrap();
        assert!(check(by_year));
    }

    #[test]
    fn what_trino_would_answer_differently_stays_local() {
        // avg of a decimal: Trino rounds to the argument's scale, DataFusion widens it.
        let plan = orders()
            .aggregate(vec![col("channel")], vec![avg(col("revenue"))])
            .unwrap();
        assert!(!check(plan));
        // Day of week: DataFusion counts from Sunday = 0, Trino from Monday = 1.
        let plan = orders()
            .project(vec![date_part(lit("dow"), col("order_date"))])
            .unwrap();
        assert!(!check(plan));
        // Trino has no ILIKE.
        let plan = orders().filter(col("channel").ilike(lit("G%"))).unwrap();
        assert!(!check(plan));
        // NaN has no literal in Trino's SQL.
        let plan = orders()
            .filter(cast(col("items"), DataType::Float64).lt(lit(
                datafusion::common::ScalarValue::Float64(Some(f64::NAN)),
            )))
            .unwrap();
        assert!(!check(plan));
        // A function Trino does not have under that name and meaning.
        let plan = orders()
            .project(vec![datafusion::functions::expr_fn::md5(col("channel"))])
            .unwrap();
        assert!(!check(plan));
    }
}
