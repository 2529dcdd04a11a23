//! Analyses: the window-function columns (`abc`, `quadrant`, `share`, `runningTotal`, `rank`,
//! `change`) added on top of the measures table.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, NullEquality, ScalarValue};
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::median::median_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::{lag, rank};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::find_window_exprs;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowFrame,
    WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition, cast, ident, lit,
};

use super::measures::{buckets, stack};
use super::time::time_literal;
use super::{Compiler, Keys, Plan, field_type};
use crate::SqlError;
use crate::functions;
use crate::ga4::Ga4Table;
use crate::ga4::additivity::{Additivity, additivity};
use crate::model::{Aggregation, MemberRef};
use crate::spec::time::LocalRange;
use crate::spec::{Analysis, Split};

impl<'a> Compiler<'a> {
    /// Adds the analysis columns. `measures` and `range` are the measures table's, for analyses
    /// of a measure that does not add up across rows, which ask the sources again.
    pub(super) async fn analyses(
        &mut self,
        measures: &Plan,
        range: Option<LocalRange>,
        plan: LogicalPlan,
    ) -> Result<LogicalPlan, SqlError> {
        let spec = self.spec;
        let bucket: Vec<Expr> = spec
            .time
            .as_ref()
            .and_then(|t| t.bucket_column())
            .map(|c| ident(c.as_str()))
            .into_iter()
            .collect();
        let dims: Vec<Expr> = spec
            .dimensions
            .iter()
            .map(|d| ident(d.to_string()))
            .collect();
        let mut plan = plan;
        for analysis in &spec.analyses {
            // A share or a running total of a measure that does not add up across rows (a
            // distinct count, an average, a ratio, GA4 users) is no sum of the rows' values: the
            // sources compute it over the whole bucket or the range so far.
            match analysis {
                Analysis::Share { measure } if !self.adds_up(measure).await? => {
                    plan = self.share_of_totals(measures, range, plan, measure).await?;
                    continue;
                }
                Analysis::RunningTotal { measure } if !self.adds_up(measure).await? => {
                    plan = self.running_totals(measures, range, plan, measure).await?;
                    continue;
                }
                _ => {}
            }
            let mut columns: Vec<(String, Expr)> = Vec::new();
            match analysis {
                Analysis::Abc {
                    measure,
                    a,
                    b,
                    partition_by,
                } => {
                    let parts: Vec<Expr> =
                        partition_by.iter().map(|d| ident(d.to_string())).collect();
                    let value = ident(measure.to_string());
                    columns.push((
                        "abc_share".into(),
                        window(
                            functions::abc_share_udwf(),
                            vec![value.clone()],
                            parts.clone(),
                            vec![],
                            None,
                        )?,
                    ));
                    columns.push((
                        "abc_class".into(),
                        window(
                            functions::abc_class_udwf(),
                            vec![value, lit(*a), lit(*b)],
                            parts,
                            vec![],
                            None,
                        )?,
                    ));
                }
                Analysis::Quadrant {
                    x,
                    y,
                    x_split,
                    y_split,
                    labels,
                } => {
                    let split = |m: &MemberRef, s: &Split| -> Result<Expr, SqlError> {
                        let value = cast(ident(m.to_string()), DataType::Float64);
                        Ok(match s {
                            Split::Mean => window(avg_udaf(), vec![value], vec![], vec![], None)?,
                            Split::Median => {
                                window(median_udaf(), vec![value], vec![], vec![], None)?
                            }
                            Split::Fixed(v) => lit(*v),
                        })
                    };
                    columns.push(("quadrant_x_split".into(), split(x, x_split)?));
                    columns.push(("quadrant_y_split".into(), split(y, y_split)?));
                    plan = add_columns(plan, std::mem::take(&mut columns))?;
                    let args = vec![
                        ident(x.to_string()),
                        ident(y.to_string()),
                        ident("quadrant_x_split"),
                        ident("quadrant_y_split"),
                    ];
                    columns.push((
                        "quadrant".into(),
                        functions::quadrant_udf().call(args.clone()),
                    ));
                    if *labels {
                        columns.push((
                            "quadrant_label".into(),
                            functions::quadrant_label_udf().call(args),
                        ));
                    }
                }
                Analysis::Share { measure } => {
                    let value = cast(ident(measure.to_string()), DataType::Float64);
                    let total = window(
                        sum_udaf(),
                        vec![value.clone()],
                        bucket.clone(),
                        vec![],
                        None,
                    )?;
                    columns.push((format!("{measure}.share"), value / nullif(total, lit(0.0))));
                }
                Analysis::RunningTotal { measure } => {
                    let value = ident(measure.to_string());
                    let (parts, order) = if bucket.is_empty() {
                        let mut order = vec![value.clone().sort(false, false)];
                        order.extend(dims.iter().map(|d| d.clone().sort(true, false)));
                        (vec![], order)
                    } else {
                        (
                            dims.clone(),
                            bucket.iter().map(|b| b.clone().sort(true, false)).collect(),
                        )
                    };
                    let frame = WindowFrame::new_bounds(
                        WindowFrameUnits::Rows,
                        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
                        WindowFrameBound::CurrentRow,
                    );
                    columns.push((
                        format!("{measure}.running_total"),
                        window(sum_udaf(), vec![value], parts, order, Some(frame))?,
                    ));
                }
                Analysis::Rank { measure } => {
                    let order = vec![ident(measure.to_string()).sort(false, false)];
                    let expr = rank()
                        .partition_by(bucket.clone())
                        .order_by(order)
                        .build()?;
                    columns.push((format!("{measure}.rank"), expr));
                }
                Analysis::Change { measure } => {
                    let value = ident(measure.to_string());
                    let order: Vec<SortExpr> =
                        bucket.iter().map(|b| b.clone().sort(true, false)).collect();
                    let previous = lag(value.clone(), Some(1), None)
                        .partition_by(dims.clone())
                        .order_by(order)
                        .build()?;
                    let name = format!("{measure}.previous");
                    columns.push((name.clone(), previous));
                    plan = add_columns(plan, std::mem::take(&mut columns))?;
                    columns.push((
                        format!("{measure}.previous_change_pct"),
                        functions::pct_change_udf().call(vec![value, ident(name)]),
                    ));
                }
            }
            plan = add_columns(plan, columns)?;
        }
        Ok(plan)
    }

    /// Whether the measure's value for a group is the sum of its values for the group's parts:
    /// a sum or a count over a warehouse table, or a sum of a GA4 metric additive across every
    /// dimension (event counts, revenue).
    async fn adds_up(&mut self, m: &MemberRef) -> Result<bool, SqlError> {
        let Some((_, measure)) = self.model.measure(m) else {
            return Ok(false);
        };
        if !matches!(measure.aggregation, Aggregation::Sum | Aggregation::Count) {
            return Ok(false);
        }
        let r = self.resolve(&m.source).await?;
        let ga4: Vec<&Ga4Table> = r
            .providers
            .values()
            .filter_map(|p| p.downcast_ref::<Ga4Table>())
            .collect();
        if ga4.is_empty() {
            return Ok(true);
        }
        if !matches!(measure.aggregation, Aggregation::Sum) {
            return Ok(false);
        }
        let additive = |name: &str| {
            ga4.iter().any(|t| {
                t.column(name)
                    .is_some_and(|c| c.is_metric() && additivity(&c.api_name) == Additivity::Always)
            })
        };
        Ok(self
            .aggregate(&r, m)?
            .column_refs()
            .iter()
            .all(|c| additive(&c.name)))
    }

    /// `<m>.share` of a measure that does not add up: each row's value over the measure the
    /// sources compute for the row's whole bucket (or the whole range without a grain), before
    /// measure filters and the limit.
    async fn share_of_totals(
        &mut self,
        measures: &Plan,
        range: Option<LocalRange>,
        main: LogicalPlan,
        measure: &MemberRef,
    ) -> Result<LogicalPlan, SqlError> {
        let name = measure.to_string();
        let total = format!("__total.{name}");
        let bucket = self.key_columns(Keys::Bucket);
        let totals = self
            .measures_table(measures, range, None, Keys::Bucket)
            .await?;
        let projection = bucket
            .iter()
            .map(|b| ident(b.as_str()).alias(format!("__total.{b}")))
            .chain([ident(name.as_str()).alias(total.as_str())]);
        let totals = LogicalPlanBuilder::from(totals)
            .project(projection)?
            .build()?;
        let share = cast(ident(name.as_str()), DataType::Float64)
            / nullif(cast(ident(total.as_str()), DataType::Float64), lit(0.0));
        let side_keys: Vec<String> = bucket.iter().map(|b| format!("__total.{b}")).collect();
        add_matched(
            main,
            totals,
            &bucket,
            &side_keys,
            share.alias(format!("{name}.share")),
        )
    }

    /// `<m>.running_total` of a measure that does not add up: for each bucket, the measure the
    /// sources compute over the range from its start to the bucket's end, per dimension values.
    async fn running_totals(
        &mut self,
        measures: &Plan,
        range: Option<LocalRange>,
        main: LogicalPlan,
        measure: &MemberRef,
    ) -> Result<LogicalPlan, SqlError> {
        let name = measure.to_string();
        let time = self.spec.time.as_ref();
        let (Some(t), Some(grain), Some(bucket)) = (
            time,
            time.and_then(|t| t.grain),
            time.and_then(|t| t.bucket_column()),
        ) else {
            return Err(SqlError::bad(
                "analysis",
                format!(
                    "a running total without a time grain adds `{name}` up down the ranking, \
                     and `{name}` does not add up across rows (a distinct count, an average, a \
                     ratio or a non-additive GA4 metric): ask for it with a time grain, where \
                     each bucket's running total is computed over the range up to it"
                ),
            ));
        };
        let Some(range) = range else {
            return Err(SqlError::bad(
                "time.range",
                format!(
                    "a running total of `{name}`, which does not add up across rows, is computed \
                     over the range up to each bucket: the spec needs a time range"
                ),
            ));
        };
        let bucket_type = field_type(main.schema(), &bucket)?;
        let dimensions = self.key_columns(Keys::Dimensions);
        let mut parts = Vec::new();
        for (label, _, end) in buckets(grain, &range, "analysis")? {
            let so_far = LocalRange {
                start: range.start,
                end,
                ..range
            };
            let part = self
                .measures_table(measures, Some(so_far), None, Keys::Dimensions)
                .await?;
            let label = cast(
                time_literal(label, false, &bucket_type, t.timezone),
                bucket_type.clone(),
            );
            let projection = std::iter::once(label.alias("__running.bucket"))
                .chain(
                    dimensions
                        .iter()
                        .map(|d| ident(d.as_str()).alias(format!("__running.{d}"))),
                )
                .chain([ident(name.as_str()).alias("__running.value")]);
            parts.push(
                LogicalPlanBuilder::from(part)
                    .project(projection)?
                    .build()?,
            );
        }
        let Some(stacked) = stack(parts)? else {
            return Err(SqlError::bad(
                "time.range",
                "the time range is empty: no bucket to total",
            ));
        };
        let side_keys: Vec<String> = std::iter::once("__running.bucket".to_string())
            .chain(dimensions.iter().map(|d| format!("__running.{d}")))
            .collect();
        let keys: Vec<String> = std::iter::once(bucket).chain(dimensions).collect();
        add_matched(
            main,
            stacked,
            &keys,
            &side_keys,
            ident("__running.value").alias(format!("{name}.running_total")),
        )
    }
}

/// `main` with `column` (an expression over `side`'s columns) added: each row matched to the
/// `side` row whose `side_keys` equal its `keys` (NULL matching NULL), NULL where none does; with
/// no keys, `side`'s one row beside every row.
fn add_matched(
    main: LogicalPlan,
    side: LogicalPlan,
    keys: &[String],
    side_keys: &[String],
    column: Expr,
) -> Result<LogicalPlan, SqlError> {
    let kept = columns_of(&main);
    let joined = if keys.is_empty() {
        LogicalPlanBuilder::from(main).cross_join(side)?
    } else {
        let left: Vec<Column> = keys.iter().map(Column::new_unqualified).collect();
        let right: Vec<Column> = side_keys.iter().map(Column::new_unqualified).collect();
        LogicalPlanBuilder::from(main).join_detailed(
            side,
            JoinType::Left,
            (left, right),
            None,
            NullEquality::NullEqualsNull,
        )?
    };
    Ok(joined.project(kept.into_iter().chain([column]))?.build()?)
}

/// The columns of `plan`, as expressions.
fn columns_of(plan: &LogicalPlan) -> Vec<Expr> {
    plan.schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect()
}

/// Adds named columns (which may contain window functions) to a plan.
fn add_columns(plan: LogicalPlan, columns: Vec<(String, Expr)>) -> Result<LogicalPlan, SqlError> {
    if columns.is_empty() {
        return Ok(plan);
    }
    let existing = columns_of(&plan);
    let windows = find_window_exprs(columns.iter().map(|(_, e)| e));
    let plan = if windows.is_empty() {
        plan
    } else {
        LogicalPlanBuilder::window_plan(plan, windows)?
    };
    let projection = existing
        .into_iter()
        .chain(columns.into_iter().map(|(name, e)| e.alias(name)));
    Ok(LogicalPlanBuilder::from(plan)
        .project(projection)?
        .build()?)
}

/// A window function call.
fn window(
    fun: impl Into<WindowFunctionDefinition>,
    args: Vec<Expr>,
    partition_by: Vec<Expr>,
    order_by: Vec<SortExpr>,
    frame: Option<WindowFrame>,
) -> Result<Expr, SqlError> {
    let mut builder = Expr::from(WindowFunction::new(fun, args)).partition_by(partition_by);
    // An empty ORDER BY must stay absent: DataFusion would pick a RANGE frame that needs one.
    if !order_by.is_empty() {
        builder = builder.order_by(order_by);
    }
    if let Some(frame) = frame {
        builder = builder.window_frame(frame);
    }
    Ok(builder.build()?)
}
