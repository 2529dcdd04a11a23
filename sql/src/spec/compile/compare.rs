//! Period comparison: how far back the comparison period lies, and its measures table merged onto
//! the current rows by key, with the `.compare`, `.change` and `.change_pct` columns.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, ident, lit};

use super::{CURRENT_COLUMN, Compiler, Keys, Plan, field_type};
use crate::SqlError;
use crate::functions;
use crate::functions::merge_value_udaf;
use crate::model::MemberRef;
use crate::spec::Compare;
use crate::spec::time::{LocalRange, Shift};

impl<'a> Compiler<'a> {
    /// The measures table over `range` (by the keys, or one grand-total row without them), with
    /// the comparison period's measures merged on when the spec compares.
    pub(super) async fn compared_measures(
        &mut self,
        plan: &Plan,
        range: Option<LocalRange>,
        keys: Keys,
    ) -> Result<LogicalPlan, SqlError> {
        let current = self.measures_table(plan, range, None, keys).await?;
        let (Some(compare), Some(range)) = (self.spec.compare, range) else {
            return Ok(current);
        };
        let shift = shift_of(compare, &range);
        let previous = self
            .measures_table(plan, Some(range.back(shift)), Some(shift), keys)
            .await?;
        let keys = self.key_columns(keys);
        self.merge_compare(current, previous, &keys, &plan.needed)
    }

    /// Merges the comparison period's measures onto the current rows by key: UNION ALL of both,
    /// each row carrying its own period's columns, grouped by the keys with `merge_value` (one
    /// value per key and column, never two combined), then the current keys kept.
    fn merge_compare(
        &self,
        current: LogicalPlan,
        previous: LogicalPlan,
        keys: &[String],
        needed: &[MemberRef],
    ) -> Result<LogicalPlan, SqlError> {
        let requested = &self.spec.measures;
        let types: Vec<(String, DataType)> = needed
            .iter()
            .map(|m| Ok((m.to_string(), field_type(current.schema(), &m.to_string())?)))
            .collect::<Result<_, SqlError>>()?;
        let compare_name = |m: &str| format!("{m}.compare");
        let is_requested = |m: &str| requested.iter().any(|r| r.to_string() == m);
        let side = |is_current: bool| -> Result<Vec<Expr>, SqlError> {
            let mut exprs: Vec<Expr> = keys.iter().map(|k| ident(k.as_str())).collect();
            for (m, t) in &types {
                exprs.push(if is_current {
                    ident(m.as_str())
                } else {
                    lit(ScalarValue::try_from(t)?).alias(m.as_str())
                });
            }
            for (m, t) in types.iter().filter(|(m, _)| is_requested(m)) {
                exprs.push(if is_current {
                    lit(ScalarValue::try_from(t)?).alias(compare_name(m))
                } else {
                    ident(m.as_str()).alias(compare_name(m))
                });
            }
            exprs.push(lit(is_current).alias(CURRENT_COLUMN));
            Ok(exprs)
        };
        let current = LogicalPlanBuilder::from(current)
            .project(side(true)?)?
            .build()?;
        let previous = LogicalPlanBuilder::from(previous)
            .project(side(false)?)?
            .build()?;
        let mut aggregates: Vec<Expr> = types
            .iter()
            .map(|(m, _)| merge(ident(m.as_str())).alias(m.as_str()))
            .collect();
        for (m, _) in types.iter().filter(|(m, _)| is_requested(m)) {
            aggregates.push(merge(ident(compare_name(m))).alias(compare_name(m)));
        }
        aggregates.push(max(ident(CURRENT_COLUMN)).alias(CURRENT_COLUMN));
        let mut projection: Vec<Expr> = keys.iter().map(|k| ident(k.as_str())).collect();
        for (m, _) in &types {
            projection.push(ident(m.as_str()));
        }
        for (m, _) in types.iter().filter(|(m, _)| is_requested(m)) {
            let (cur, prev) = (ident(m.as_str()), ident(compare_name(m)));
            projection.push(prev.clone());
            projection.push((cur.clone() - prev.clone()).alias(format!("{m}.change")));
            projection.push(
                functions::pct_change_udf()
                    .call(vec![cur, prev])
                    .alias(format!("{m}.change_pct")),
            );
        }
        Ok(LogicalPlanBuilder::from(current)
            .union(previous)?
            .aggregate(keys.iter().map(|k| ident(k.as_str())), aggregates)?
            .filter(ident(CURRENT_COLUMN))?
            .project(projection)?
            .build()?)
    }
}

/// `merge_value(e)`: the one value of a group.
pub(super) fn merge(e: Expr) -> Expr {
    merge_value_udaf().call(vec![e])
}

/// How far back the comparison period is.
fn shift_of(compare: Compare, range: &LocalRange) -> Shift {
    match compare {
        Compare::PreviousPeriod => range.period,
        Compare::SamePeriodLastYear => Shift::Months(12),
    }
}
