//! Analyses: the window-function columns (`abc`, `quadrant`, `share`, `runningTotal`, `rank`,
//! `change`) added on top of the measures table.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::median::median_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::{lag, rank};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::find_window_exprs;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, WindowFrame,
    WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition, cast, ident, lit,
};

use super::Compiler;
use crate::SqlError;
use crate::functions;
use crate::model::MemberRef;
use crate::spec::{Analysis, Split};

impl<'a> Compiler<'a> {
    /// Adds the analysis columns.
    pub(super) fn analyses(&self, plan: LogicalPlan) -> Result<LogicalPlan, SqlError> {
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
}

/// Adds named columns (which may contain window functions) to a plan.
fn add_columns(plan: LogicalPlan, columns: Vec<(String, Expr)>) -> Result<LogicalPlan, SqlError> {
    if columns.is_empty() {
        return Ok(plan);
    }
    let existing: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
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
