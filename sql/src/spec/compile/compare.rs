//! Period comparison: how far back the comparison period lies, and its measures table merged onto
//! the current rows by key, with the `.compare`, `.change` and `.change_pct` columns.

use datafusion::common::{Column, NullEquality};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, ident};

use super::{Compiler, Keys, Plan};
use crate::SqlError;
use crate::functions;
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

    /// Merges the comparison period's measures onto the current rows by key: a left join, NULL
    /// keys matching NULL keys, so each row keeps its own values and gains its comparison's
    /// (no row's value is combined with another's, which a non-additive measure forbids).
    fn merge_compare(
        &self,
        current: LogicalPlan,
        previous: LogicalPlan,
        keys: &[String],
        needed: &[MemberRef],
    ) -> Result<LogicalPlan, SqlError> {
        let compare_name = |m: &str| format!("{m}.compare");
        let previous_key = |k: &str| format!("__previous.{k}");
        let requested: Vec<String> = needed
            .iter()
            .filter(|m| self.spec.measures.contains(m))
            .map(ToString::to_string)
            .collect();
        let previous = LogicalPlanBuilder::from(previous)
            .project(
                keys.iter()
                    .map(|k| ident(k.as_str()).alias(previous_key(k)))
                    .chain(
                        requested
                            .iter()
                            .map(|m| ident(m.as_str()).alias(compare_name(m))),
                    ),
            )?
            .build()?;
        let joined = if keys.is_empty() {
            LogicalPlanBuilder::from(current).cross_join(previous)?
        } else {
            let left: Vec<Column> = keys.iter().map(Column::new_unqualified).collect();
            let right: Vec<Column> = keys
                .iter()
                .map(|k| Column::new_unqualified(previous_key(k)))
                .collect();
            LogicalPlanBuilder::from(current).join_detailed(
                previous,
                JoinType::Left,
                (left, right),
                None,
                NullEquality::NullEqualsNull,
            )?
        };
        let mut projection: Vec<Expr> = keys.iter().map(|k| ident(k.as_str())).collect();
        for m in needed {
            projection.push(ident(m.to_string()));
        }
        for m in &requested {
            let (cur, prev) = (ident(m.as_str()), ident(compare_name(m)));
            projection.push(prev.clone());
            projection.push((cur.clone() - prev.clone()).alias(format!("{m}.change")));
            projection.push(
                functions::pct_change_udf()
                    .call(vec![cur, prev])
                    .alias(format!("{m}.change_pct")),
            );
        }
        Ok(joined.project(projection)?.build()?)
    }
}

/// How far back the comparison period is.
fn shift_of(compare: Compare, range: &LocalRange) -> Shift {
    match compare {
        Compare::PreviousPeriod => range.period,
        Compare::SamePeriodLastYear => Shift::Months(12),
    }
}
